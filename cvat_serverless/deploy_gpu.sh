#!/bin/bash
# Deploy prelabel's CVAT functions on an NVIDIA GPU (function-gpu.yaml), like CVAT's serverless/deploy_gpu.sh.
# Usage: cvat_serverless/deploy_gpu.sh [FUNCTION_DIR...]; needs the NVIDIA Container Toolkit on the docker host.

set -eu

SCRIPT_DIR="$( cd "$( dirname "${BASH_SOURCE[0]}" )" >/dev/null 2>&1 && pwd )"
PRELABEL_FUNCTION_FILE=function-gpu.yaml exec "$SCRIPT_DIR/deploy_cpu.sh" "$@"
