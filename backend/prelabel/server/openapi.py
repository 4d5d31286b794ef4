"""The server's OpenAPI description (``openapi.yaml`` beside this module), served at ``/openapi.json``."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

import yaml
from flask import Flask, Response, jsonify


@cache
def openapi_document() -> dict[str, Any]:
    """The parsed OpenAPI 3 document."""
    return yaml.safe_load(files("prelabel.server").joinpath("openapi.yaml").read_text(encoding="utf-8"))


def install_openapi(app: Flask) -> None:
    """Serve the document at ``GET /openapi.json``."""

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(openapi_document())
