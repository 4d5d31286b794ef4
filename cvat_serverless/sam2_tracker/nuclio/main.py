"""Nuclio entry point of the SAM 2.1 tracker for CVAT's AI Tools > Trackers; the work is done in prelabel.cvat.nuclio."""

from prelabel.cvat import nuclio


def init_context(context):
    nuclio.init_tracker(context)


def handler(context, event):
    return nuclio.handle(context, event)
