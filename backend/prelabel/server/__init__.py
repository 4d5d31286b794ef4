"""The Label Studio ML backend server."""

from prelabel.server.app import create_app

__all__ = ["create_app"]
