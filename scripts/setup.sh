#!/usr/bin/env bash
# Set up oodbench in ./.venv on a fresh machine: torch first (pinned, so pip does not pull a
# multi-GB CUDA download of a newer release), then the package with its test extras and Ray (for the Ray executor and its test).
# Idempotent: a second call only re-checks the install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,ray]" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
.venv/bin/python -c "import torch, pytorch_ood, oodbench; print('oodbench ready: torch', torch.__version__)"
