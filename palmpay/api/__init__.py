"""The HTTP API (FastAPI): :func:`palmpay.api.app.create_app`, :func:`palmpay.api.server.serve`."""

__all__: list[str] = []
