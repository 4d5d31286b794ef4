"""Request authentication: HTTP basic auth and/or a bearer token, and an optional webhook secret.

Label Studio's ML backend connection sends ``Authorization: Basic ...`` on every call when its "basic auth"
option is set; a bearer token suits Prometheus scrapers, scripts and proxies. Webhooks carry no credentials
(only the headers configured on the webhook in Label Studio), so ``/webhook`` is checked against
``webhook_secret`` instead. Secrets are compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import hmac
import logging

from flask import Flask, Response, jsonify, request

from prelabel.settings import Settings

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhook"
WEBHOOK_SECRET_HEADER = "X-Prelabel-Webhook-Secret"


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def accepted_authorizations(settings: Settings) -> list[str]:
    """The ``Authorization`` header values that authenticate a request; empty when auth is off."""
    accepted = []
    if settings.basic_auth_user:
        pair = f"{settings.basic_auth_user}:{settings.basic_auth_pass}".encode()
        accepted.append(f"Basic {base64.b64encode(pair).decode()}")
    if settings.api_token:
        accepted.append(f"Bearer {settings.api_token}")
    return accepted


def install_auth(app: Flask, settings: Settings) -> None:
    """Refuse (401) every request without accepted credentials, before any handler runs."""
    accepted = accepted_authorizations(settings)
    challenge = {"WWW-Authenticate": 'Basic realm="prelabel"' if settings.basic_auth_user else "Bearer"}

    @app.before_request
    def check_credentials() -> tuple[Response, int, dict[str, str]] | None:
        if request.path == WEBHOOK_PATH:
            if settings.webhook_secret and not _equal(request.headers.get(WEBHOOK_SECRET_HEADER, ""),
                                                      settings.webhook_secret):
                log.warning("webhook refused: missing or wrong %s header", WEBHOOK_SECRET_HEADER)
                return jsonify({"error": f"webhook secret required in the {WEBHOOK_SECRET_HEADER} header"}), 401, {}
            return None
        if not accepted:
            return None
        given = request.headers.get("Authorization", "")
        # Compare against every accepted value (no early exit), so timing does not tell which one is set.
        if not sum(_equal(given, value) for value in accepted):
            return jsonify({"error": "authentication required"}), 401, challenge
        return None
