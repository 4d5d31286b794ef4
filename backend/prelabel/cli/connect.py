"""``prelabel connect``: connect a running ``prelabel serve`` to a Label Studio project through its API."""

from __future__ import annotations

import argparse
import logging

from prelabel.cli.common import add_parser
from prelabel.cli.feedback import label_studio
from prelabel.settings import Settings

log = logging.getLogger("prelabel")


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    connect = add_parser(sub, "connect",
                         description="Connect the ML backend at --url to a Label Studio project (LABEL_STUDIO_URL, "
                                     "LABEL_STUDIO_API_KEY), as Project > Settings > Model > Connect model does; "
                                     "when Label Studio refuses, the error names the fix.")
    connect.add_argument("--project", type=int, required=True, help="Label Studio project id")
    connect.add_argument("--url", default="http://127.0.0.1:9090",
                         help="the backend's URL as Label Studio reaches it (prelabel serve's --host and --port)")
    connect.add_argument("--title", default="prelabel", help="the backend's name in Label Studio")
    connect.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    client = label_studio(settings)
    url = args.url.rstrip("/")
    existing = [ml for ml in client.ml_backends(args.project) if str(ml.get("url", "")).rstrip("/") == url]
    if existing:
        ml = existing[0]
        log.info("project %d already has the backend %s (ML backend %s, state %s)", args.project, url, ml["id"],
                 ml.get("state"))
        return 0
    ml_id = client.connect_backend(args.project, url, args.title)
    ml = next(ml for ml in client.ml_backends(args.project) if ml["id"] == ml_id)
    log.info("connected %s to project %d (ML backend %d, model_version %s); pre-label with the Data Manager's "
             "Retrieve Predictions, or turn on Auto-Annotation for smart tools", url, args.project, ml_id,
             ml.get("model_version"))
    return 0
