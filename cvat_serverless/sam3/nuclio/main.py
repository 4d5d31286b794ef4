"""Nuclio entry point of the SAM 3 concept detector for CVAT; the work is done in prelabel.cvat.nuclio."""

from pathlib import Path

from prelabel.cvat import nuclio


def init_context(context):
    nuclio.init_detector(context, Path(__file__).parent)


def handler(context, event):
    return nuclio.handle(context, event)
