# enflow recipes. Run them through ./just (it installs `just` from npm when missing).
# The two commands a new user needs:   ./just demo    and    ./just test

set shell := ["bash", "-euo", "pipefail", "-c"]

export GOFLAGS := "-mod=readonly"
shared := env_var_or_default("ENFLOW_SHARED", justfile_directory() / ".." / "shared")
out := env_var_or_default("ENFLOW_OUT", "out")

import? 'justfile.notebooks'
import? 'justfile.bench'

# List the recipes.
default:
    @./just --list

# Install everything the project needs (Go modules, Node cross-check tools, system packages, Python test venv).
setup: setup-go setup-js setup-system setup-py

# Debian packages: headless Chromium renders the HTML report in a test (skipped when present).
setup-system:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v chromium >/dev/null 2>&1 && exit 0
    if [ "$(id -u)" != 0 ]; then echo "setup-system: run as root or install Debian's chromium yourself" >&2; exit 1; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null

# Go modules, the XLA CPU plugin (.tools/pjrt) and bin/enflow, with XLA compiled in when cgo works (else pure Go, with a note).
setup-go:
    bash scripts/build/enflow.sh

# Python test venv .tools/venv with pinned RDKit and ASE (export round trips, `enflow metrics validity`).
setup-py:
    bash scripts/pyenv/setup.sh

# Node.js packages used to cross-check our Parquet/Arrow files (DuckDB, apache-arrow).
setup-js:
    cd tools/js && npm ci --silent --no-audit --no-fund

# The main job: 20 QM9 molecules sampled from the published E-NF (stability, RDKit validity when
# ./just setup-py was run, SDF, HTML pictures), then ETL of the shipped data, dataset statistics
# and metrics, a small DW4 flow. The demo picks the engine per part unless GOMLX_BACKEND (or
# --backend) sets one for all: QM9 sampling automatic (XLA when present: ≈2× faster than SimpleGo),
# the tiny DW4 models SimpleGo (all compilation on XLA: 81.2 s vs 34.8 s, measured 2026-12-05).
demo: setup-go
    bin/enflow demo --shared {{shared}} --out {{out}}/demo

# The full test suite: format, vet, unit + integration tests, short fuzzing, notebooks, model tests on XLA CPU.
test: setup test-go test-fuzz notebooks test-xla test-slurm

# Format, vet and the Go tests (pure-Go backend).
test-go: setup-go setup-js setup-py
    @echo "== gofmt"; test -z "$(gofmt -l $(git ls-files '*.go'))" || { gofmt -l $(git ls-files '*.go'); exit 1; }
    @echo "== go vet"; go vet ./...
    @echo "== go test"; CI="${CI:-}" ENFLOW_SHARED={{shared}} go test -count=1 -timeout 25m ./...

# scripts/slurm/setup.sh installs slurm-wlm + munge; pipeline/jobs TestSlurmArray starts munged,
# slurmctld and slurmd in a temp dir, runs jobs/mini.toml as `sbatch --array=0-3`, cancels a task
# midway and resubmits. ENFLOW_SLURM_MAX_TASKS=N throttles the array to N tasks at a time.
# The job runner on a real one-node Slurm cluster on loopback (root; skipped otherwise).
test-slurm:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ "$(id -u)" != 0 ]; then echo "test-slurm: skipped (needs root to install and run Slurm)"; exit 0; fi
    bash scripts/slurm/setup.sh
    echo "== go test (Slurm)"
    CI="${CI:-}" ENFLOW_SLURM=1 go test -count=1 -timeout 20m -run '^TestSlurmArray$' -v ./pipeline/jobs

# Every fuzz target for a short time (FUZZTIME, default 10s each); crashers become regression tests.
test-fuzz:
    FUZZTIME="${FUZZTIME:-10s}" ENFLOW_SHARED={{shared}} bash scripts/fuzz/run.sh

# ETL of the shipped datasets into {{out}}/data, and the carved QM9 Positional split into {{out}}/data_carved.
etl: setup-go
    bin/enflow etl qm9 --npz {{shared}}/data/qm9/cormorant_qm9_test.npz --positional --out {{out}}/data
    bin/enflow etl qm9 --npz {{shared}}/data/qm9/cormorant_qm9_test.npz --positional --positional-resplit 80,10,10 --out {{out}}/data_carved
    bin/enflow etl particles --system dw4 --data {{shared}}/data/dw4 --out {{out}}/data
    bin/enflow etl particles --system lj13 --data {{shared}}/data/lj13 --out {{out}}/data
