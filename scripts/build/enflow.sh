#!/usr/bin/env bash
# Builds bin/enflow: Go modules, the XLA CPU PJRT plugin (scripts/xla/setup.sh, into .tools/pjrt;
# quick when present) and ONE binary, with XLA compiled in (-tags xla) when cgo works
# (CGO_ENABLED=1 and a C compiler), else pure Go. The binary picks its engine when it starts
# (gomlx_models/backend.Resolve): XLA when compiled in and a plugin is found, else SimpleGo.
# ENFLOW_XLA=0 builds the pure-Go binary and skips the plugin.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

go mod download

if [ "${ENFLOW_XLA:-1}" = 0 ]; then
  CGO_ENABLED=0 go build -o bin/enflow ./pipeline/cmd/enflow
  echo "setup-go: bin/enflow built without XLA (ENFLOW_XLA=0); it runs on SimpleGo" >&2
  exit 0
fi

plugin=yes
if ! bash scripts/xla/setup.sh; then
  plugin=no
  echo "setup-go: note: the XLA CPU plugin could not be installed (see above); bin/enflow will run on SimpleGo until scripts/xla/setup.sh succeeds" >&2
fi

why=""
cc=$(go env CC 2>/dev/null || true)
cc=${cc%% *}
if [ "${CGO_ENABLED:-}" = 0 ]; then
  why="cgo is disabled (CGO_ENABLED=0)"
elif [ -z "$cc" ] || ! command -v "$cc" >/dev/null 2>&1 || [ "$(go env CGO_ENABLED 2>/dev/null)" != 1 ]; then
  why="cgo needs a C compiler (${cc:-\$CC} not found; apt-get install gcc)"
elif ! CGO_ENABLED=1 go build -tags xla -o bin/enflow ./pipeline/cmd/enflow; then
  why="the cgo build with -tags xla failed (see above)"
fi

if [ -n "$why" ]; then
  CGO_ENABLED=0 go build -o bin/enflow ./pipeline/cmd/enflow
  echo "setup-go: note: $why: bin/enflow built without XLA; it runs on the pure-Go SimpleGo engine (slower)" >&2
elif [ "$plugin" = yes ]; then
  echo "setup-go: bin/enflow built with XLA; it runs on xla:cpu (plugin .tools/pjrt), --backend go forces SimpleGo" >&2
else
  echo "setup-go: bin/enflow built with XLA, but without a plugin it runs on SimpleGo" >&2
fi
