"""Backhaul: reverse ETL that sends only what changed."""

__version__ = "0.1.0"
