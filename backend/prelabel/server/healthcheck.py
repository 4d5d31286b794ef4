"""Container health check: exit 0 when the local backend answers /health with its models loaded.

Sends the configured credentials (basic auth or bearer token, from the same ``PRELABEL_*`` settings the
server reads), so it works with auth turned on. Used by the Dockerfiles' ``HEALTHCHECK``:

    python -m prelabel.server.healthcheck [--url http://127.0.0.1:9090]
"""

from __future__ import annotations

import argparse
import sys

import requests

from prelabel.server.security import accepted_authorizations
from prelabel.settings import Settings


def check(url: str, settings: Settings, timeout_s: float = 5.0) -> tuple[bool, str]:
    """(healthy, why) for the backend at ``url``."""
    headers = {"Authorization": auth} if (auth := next(iter(accepted_authorizations(settings)), None)) else {}
    try:
        response = requests.get(f"{url.rstrip('/')}/health", headers=headers, timeout=timeout_s)
        state = response.json().get("model_state") if response.ok else None
    except requests.RequestException as exc:  # a refused connection, an error status or a body that is not JSON
        return False, f"no answer from {url}: {exc.__class__.__name__}"
    if response.status_code != 200:
        return False, f"{url}/health answered HTTP {response.status_code}"
    return state == "ready", f"model_state={state}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="exit 0 when the backend is up with its models loaded")
    parser.add_argument("--url", default="http://127.0.0.1:9090")
    args = parser.parse_args(argv)
    healthy, why = check(args.url, Settings.load())
    print(why)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
