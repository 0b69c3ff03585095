#!/usr/bin/env bash
# Installs an XLA CPU PJRT plugin for GoMLX without GitHub access: the plugin ships inside a
# pinned PyPI wheel (a zip), whose SHA-256 is checked before its .so is extracted into
# .tools/pjrt/pjrt_c_api_cpu_plugin.so. Use it with
#   PJRT_PLUGIN_LIBRARY_PATH=$PWD/.tools/pjrt GOMLX_NO_AUTO_INSTALL=1 GOMLX_BACKEND=xla:cpu
# Idempotent: does nothing when the plugin is already there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

WHEEL_NAME=lammps-jax-pjrt-cpu
WHEEL_VERSION=0.11.2
WHEEL_FILE=lammps_jax_pjrt_cpu-0.11.2-py3-none-manylinux_2_27_x86_64.whl
WHEEL_SHA256=1319390d948b39f69f7dade496b7c385149d9ca6097a6b62114da113216d9ad1
MEMBER=lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so
DEST=.tools/pjrt

if [ -s "$DEST/pjrt_c_api_cpu_plugin.so" ]; then
  exit 0
fi
if [ "$(uname -m)" != x86_64 ] || [ "$(uname -s)" != Linux ]; then
  echo "xla setup: the pinned wheel is for linux/x86_64; install a PJRT plugin yourself (see README)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "xla setup: downloading $WHEEL_NAME==$WHEEL_VERSION from PyPI" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "$WHEEL_NAME==$WHEEL_VERSION" >&2
got=$(sha256sum "$tmp/$WHEEL_FILE" | cut -d' ' -f1)
if [ "$got" != "$WHEEL_SHA256" ]; then
  echo "xla setup: $WHEEL_FILE has sha256 $got, want $WHEEL_SHA256" >&2
  exit 1
fi
mkdir -p "$DEST"
python3 - "$tmp/$WHEEL_FILE" "$MEMBER" "$DEST/pjrt_c_api_cpu_plugin.so" <<'PY'
import shutil, sys, zipfile, os
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.replace(dest + ".tmp", dest)
PY
echo "xla setup: installed $DEST/pjrt_c_api_cpu_plugin.so" >&2
