"""``prelabel serve``: the Label Studio ML backend under gunicorn."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from prelabel.cli.common import add_parser
from prelabel.labelstudio.backend import create_app
from prelabel.labelstudio.brush import preload_brush_codec
from prelabel.labelstudio.client import LOCAL_BACKENDS_FIX
from prelabel.models.registry import preload_modules
from prelabel.pipeline.build import resolved, with_overrides
from prelabel.server.run import check_bindable, serve
from prelabel.settings import Settings

log = logging.getLogger("prelabel")


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    serve = add_parser(sub, "serve")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=9090, help="port to bind")
    serve.add_argument("--workers", type=int, default=1, help="processes; each loads its own models")
    serve.add_argument("--threads", type=int, default=8, help="request threads per process")
    serve.add_argument("--config", type=Path, help="YAML/TOML settings file (also PRELABEL_CONFIG)")
    serve.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.config:
        settings = Settings.load(args.config)
    # Before the port is bound and the workers fork: each worker's /setup then answers the planned
    # model_version from its first request on with nothing to import or probe (Label Studio allows it 3 s),
    # and its models load in a thread that imports nothing more (an import would stall the request threads).
    check_bindable(args.host, args.port)  # a busy port fails at once, before the seconds below
    settings = resolved(settings)
    # Embeddings outlive this process (workers, restarts, replicas on a shared store): RUNTIME_CACHE/embeddings
    # unless PRELABEL_EMBEDDING_STORE names another place or is off.
    settings = with_overrides(settings, embedding_store=settings.embedding_store_url(default_on=True) or "off")
    preload_modules(settings.sam_runtime, settings.detector_runtime)
    preload_brush_codec()
    log.info("settings: %s", settings.redacted())
    log.info("%s", connect_hint(args.host, args.port))
    serve(create_app, settings, args.host, args.port, args.workers, args.threads)
    return 0


def connect_hint(host: str, port: int) -> str:
    """How to connect this backend to Label Studio (printed at start-up)."""
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"
    return (f"connect it in Label Studio: Project > Settings > Model > Connect model with {url} (from another "
            f"machine or a container: this machine's address), or `prelabel connect --project ID --url {url}`. "
            f"{LOCAL_BACKENDS_FIX}.")
