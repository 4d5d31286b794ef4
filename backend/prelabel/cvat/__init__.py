"""CVAT integration: Nuclio functions (``nuclio``), cvat-sdk functions (``sdk_function``), the label spec (``spec``)."""
