#!/usr/bin/env bash
# PyTorch 2.x for the side-by-side benchmark only (never a dependency of enflow): a virtual
# environment under .tools/torch2 with a pinned torch from PyPI, torchdiffeq, numpy and scipy.
# Idempotent: nothing is done when the pinned version is already there.
#
# PyPI's Linux torch wheels are CUDA builds; their nvidia-* dependencies are installed too
# (about 5.5 GB in all). The CPU-only wheels live on download.pytorch.org, which is not a
# registry this project relies on. Only the CPU is used by scripts/bench/torch_reference.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
TORCH_VERSION="${ENFLOW_TORCH2_VERSION:-2.15.0}"
venv=".tools/torch2"
py="$venv/bin/python"
if [ -x "$py" ] && "$py" -c "import sys, torch, torchdiffeq, scipy; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
    echo "torch2 setup: torch $TORCH_VERSION already in $venv" >&2
    exit 0
fi
python3 -m venv "$venv"
echo "torch2 setup: installing torch==$TORCH_VERSION (PyPI, with its CUDA libraries) into $venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" "setuptools>=77" \
    numpy scipy "torchdiffeq==0.2.3"
"$py" -c "import torch, torchdiffeq; print('torch2 setup: torch', torch.__version__, 'torchdiffeq', torchdiffeq.__version__)" >&2
