"""Run events, the API-call recorder and redaction."""
