#!/usr/bin/env bash
# Install what `just notebooks` needs, idempotently, on a fresh Debian machine with Go:
#   1. Jupyter's notebook executor and HTML exporter from Debian (skipped when present);
#   2. GoNB, gopls and goimports, pinned in tools/gonb/go.mod, built into .tools/bin
#      (skipped when the binaries were built from the same go.mod/go.sum and Go version);
#   3. the GoNB kernel, registered into the project-local Jupyter data dir .tools/jupyter.
# Runs as root without stdin (CI), or as a user with sudo for the apt step.
# Environment: ENFLOW_TOOLS (default <repo>/.tools) moves the install directory.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="${ENFLOW_TOOLS:-$repo/.tools}"
bin="$tools/bin"
export JUPYTER_DATA_DIR="$tools/jupyter"
export PATH="$bin:$PATH"

log() { printf '== notebooks-setup: %s\n' "$*"; }

# --- 1. Jupyter (Debian packages) -------------------------------------------------------
# nbconvert (execute + HTML export) and the kernel client; no IPython kernel, no server.
apt_pkgs=(jupyter-core jupyter-nbconvert python3-nbclient python3-nbformat jupyter-client)
if /usr/bin/python3 -c 'import nbconvert, nbclient, nbformat, jupyter_client' 2>/dev/null \
    && [ -x /usr/bin/jupyter ] && /usr/bin/jupyter nbconvert --version >/dev/null 2>&1; then
  log "jupyter nbconvert $(/usr/bin/jupyter nbconvert --version) already installed"
else
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root or sudo to apt-get install ${apt_pkgs[*]}" >&2; exit 1; }
    sudo=(sudo -n)
  fi
  log "apt-get install ${apt_pkgs[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${apt_pkgs[@]}" </dev/null
  /usr/bin/jupyter nbconvert --version >/dev/null
fi

# --- 2. GoNB, gopls, goimports (Go tools module) -----------------------------------------
stamp="$bin/.gonb-tools.stamp"
want="$(cat "$repo/tools/gonb/go.mod" "$repo/tools/gonb/go.sum" | sha256sum | cut -c1-16) $(go env GOVERSION)"
if [ -x "$bin/gonb" ] && [ -x "$bin/gopls" ] && [ -x "$bin/goimports" ] \
    && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  log "gonb, gopls, goimports already built in $bin"
else
  log "building gonb, gopls, goimports from tools/gonb/go.mod into $bin (about 2 minutes)"
  mkdir -p "$bin"
  (cd "$repo/tools/gonb" && GOFLAGS=-mod=readonly GOBIN="$bin" GOWORK=off go install tool)
  echo "$want" >"$stamp"
fi

# --- 3. GoNB kernel in the project-local Jupyter data dir -------------------------------
# Always re-registered (cheap): kernel.json holds the absolute path of this checkout's
# gonb binary. Kernel logs go to files under $JUPYTER_DATA_DIR/logs (errors still reach
# stderr), so that executing a notebook does not flood the console.
mkdir -p "$JUPYTER_DATA_DIR/logs"
gonb --install --logtostderr=false --log_dir="$JUPYTER_DATA_DIR/logs" >/dev/null 2>&1 \
  || gonb --install --logtostderr=false --log_dir="$JUPYTER_DATA_DIR/logs"
/usr/bin/jupyter kernelspec list 2>/dev/null | grep -q "gonb *$JUPYTER_DATA_DIR/kernels/gonb" \
  || { echo "GoNB kernel not visible to jupyter in $JUPYTER_DATA_DIR" >&2; exit 1; }
# (gonb --version says v0.11.1 for every v0.11.x: GoNB's version.txt was not bumped; the
# module version in tools/gonb/go.mod is the one built.)
versions="$(cd "$repo/tools/gonb" && GOWORK=off go list -m -f '{{.Path}}@{{.Version}}' \
  github.com/janpfeifer/gonb golang.org/x/tools/gopls golang.org/x/tools | tr '\n' ' ')"
log "ready: ${versions}nbconvert $(/usr/bin/jupyter nbconvert --version); kernel in $JUPYTER_DATA_DIR/kernels/gonb"
