"""Nuclio entry point of the SAM interactor for CVAT's AI Tools; the work is done in prelabel.cvat.nuclio."""

from prelabel.cvat import nuclio


def init_context(context):
    nuclio.init_interactor(context)


def handler(context, event):
    return nuclio.handle(context, event)
