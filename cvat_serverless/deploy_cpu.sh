#!/bin/bash
# Deploy prelabel's CVAT functions to the Nuclio of a running CVAT, like CVAT's serverless/deploy_cpu.sh.
# Usage: cvat_serverless/deploy_cpu.sh [FUNCTION_DIR...]   (default: every function under cvat_serverless/)
# Environment: CVAT_NETWORK (docker network of CVAT, default cvat_cvat),
#              PRELABEL_FUNCTION_FILE (function.yaml; deploy_gpu.sh sets function-gpu.yaml).

set -eu

SCRIPT_DIR="$( cd "$( dirname "${BASH_SOURCE[0]}" )" >/dev/null 2>&1 && pwd )"
REPO_ROOT="$(dirname "$SCRIPT_DIR")"
FUNCTION_FILE="${PRELABEL_FUNCTION_FILE:-function.yaml}"
CVAT_NETWORK="${CVAT_NETWORK:-cvat_cvat}"

command -v nuctl >/dev/null || { echo "nuctl not found: install the version of CVAT's Nuclio dashboard" >&2; exit 1; }

if [ "$#" -gt 0 ]; then
    FUNCTION_DIRS=("$@")
else
    FUNCTION_DIRS=("$SCRIPT_DIR"/*/nuclio)
fi

BUILD_DIRS=()
cleanup() { for dir in "${BUILD_DIRS[@]+"${BUILD_DIRS[@]}"}"; do rm -rf "$dir"; done; }
trap cleanup EXIT

nuctl get project cvat --platform local >/dev/null 2>&1 || nuctl create project cvat --platform local

for func_root in "${FUNCTION_DIRS[@]}"; do
    func_root="$(cd "$func_root" && pwd)"
    [ -f "$func_root/$FUNCTION_FILE" ] || { echo "no $FUNCTION_FILE in $func_root" >&2; exit 1; }

    # Nuclio builds from --path only: stage the function with the prelabel source next to it.
    build_dir="$(mktemp -d)"
    BUILD_DIRS+=("$build_dir")
    tar -C "$func_root" --exclude=__pycache__ -cf - . | tar -xf - -C "$build_dir"
    mkdir "$build_dir/prelabel-src"
    sources=(pyproject.toml backend)
    for optional in README.md LICENSE; do [ -e "$REPO_ROOT/$optional" ] && sources+=("$optional"); done
    (cd "$REPO_ROOT" && tar --exclude=__pycache__ -cf - "${sources[@]}") | tar -xf - -C "$build_dir/prelabel-src"

    echo "Deploying $(realpath --relative-to="$REPO_ROOT" "$func_root") ($FUNCTION_FILE)..."
    nuctl deploy --project-name cvat --path "$build_dir" \
        --file "$build_dir/$FUNCTION_FILE" --platform local \
        --platform-config "{\"attributes\": {\"network\": \"$CVAT_NETWORK\"}}"
done

nuctl get function --platform local
