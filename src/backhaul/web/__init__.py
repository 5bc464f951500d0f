"""The web app: REST API, server-rendered pages, sign-in and roles (``backhaul serve``)."""
