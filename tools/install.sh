#!/usr/bin/env bash
# Create .venv/ at the repository root and install mmkw with its whole stack.
# Re-running it is cheap: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)
"${PIP[@]}" -r requirements/torch.txt
# mmcv 2.1.0 is source-only on PyPI: build it against the torch just installed.
MMCV_WITH_OPS=1 "${PIP[@]}" --no-build-isolation -r requirements/mmcv.txt
"${PIP[@]}" -r requirements/runtime.txt -r requirements/tests.txt
"${PIP[@]}" --no-build-isolation --no-deps -e .
