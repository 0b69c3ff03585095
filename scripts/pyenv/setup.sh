#!/usr/bin/env bash
# Creates the Python test venv .tools/venv (Debian's python3 -m venv) with pinned RDKit and
# ASE from PyPI. They are used only by tests (export round trips) and by the one optional
# metric `enflow metrics validity`; enflow itself never depends on Python.
# Idempotent: does nothing when the venv already has the pinned versions.
# When python3 -m venv is unavailable (Debian's python3-venv missing), installs python3-venv
# with apt-get if run as root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

RDKIT_VERSION=2026.9.1
ASE_VERSION=3.29.0
VENV=.tools/venv
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)

want="rdkit==$RDKIT_VERSION ase==$ASE_VERSION"
stamp="$VENV/.enflow-pins"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] &&
  "$VENV/bin/python" -c 'import rdkit, ase' >/dev/null 2>&1; then
  exit 0
fi

if [ -z "$PY" ] || ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup-py: python3 -m venv needs Debian's python3 and python3-venv; run as root or: apt-get install python3-venv" >&2
    exit 1
  fi
  echo "setup-py: installing python3-venv (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  PY=/usr/bin/python3
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup-py: creating $VENV with $PY" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
echo "setup-py: installing $want into $VENV" >&2
nice -n 19 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
  "rdkit==$RDKIT_VERSION" "ase==$ASE_VERSION" >&2
"$VENV/bin/python" -c 'import rdkit, ase; print("setup-py: rdkit", rdkit.__version__, "ase", ase.__version__)' >&2
printf '%s' "$want" >"$stamp"
