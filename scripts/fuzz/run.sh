#!/usr/bin/env bash
# Run every Go fuzz target of the repository for DURATION each, one after the other, and
# report the executions of each.
#
#   scripts/fuzz/run.sh [DURATION]      DURATION: a Go duration (10s, 10m) or N"x" (1000x);
#                                       default $FUZZTIME, else 10s
#
# Targets are discovered: every `func FuzzXxx(f *testing.F)` in a *_test.go file below the
# repository root (so new packages' targets are picked up without editing this script).
# Environment:
#   FUZZTIME       default duration
#   FUZZ_PARALLEL  workers per target (go test -parallel; default: GOMAXPROCS)
#   FUZZ_MATCH     only run targets whose "pkg/FuzzName" matches this extended regexp
#   FUZZ_MINIMIZE  go test -fuzzminimizetime (default 5s: the 60 s default spends short runs
#                  minimizing new corpus entries instead of fuzzing)
#   FUZZ_LOG_DIR   keep each target's full output there (default: a temporary directory)
#   FUZZ_ROOT      repository to fuzz (default: the one holding this script)
#
# A failure (crash, panic, violated property, hang) is reported with the input file that
# `go test` wrote under the package's testdata/fuzz/FuzzName/; keep that file: it becomes a
# regression test run by every plain `go test`. The exit status is 1 if any target failed.
set -euo pipefail

dur="${1:-${FUZZTIME:-10s}}"
root="${FUZZ_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
cd "$root"

logdir="${FUZZ_LOG_DIR:-}"
if [[ -z "$logdir" ]]; then
  logdir="$(mktemp -d)"
  trap 'rm -rf "$logdir"' EXIT
fi
mkdir -p "$logdir"

# pkg<TAB>target lines, sorted.
mapfile -t targets < <(
  grep -rEl --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . \
    --exclude-dir=.git --exclude-dir=.tools --exclude-dir=out --exclude-dir=node_modules --exclude-dir=testdata |
    while read -r file; do
      pkg="./$(dirname "${file#./}")"
      sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(f \*testing\.F\).*/\1/p' "$file" | while read -r name; do
        printf '%s\t%s\n' "$pkg" "$name"
      done
    done | sort -u
)
if [[ ${#targets[@]} -eq 0 ]]; then
  echo "fuzz: no fuzz targets found" >&2
  exit 1
fi

minimize="${FUZZ_MINIMIZE:-5s}"
parallel=()
if [[ -n "${FUZZ_PARALLEL:-}" ]]; then
  parallel=(-parallel "$FUZZ_PARALLEL")
fi

printf '%-28s %-28s %7s %7s %12s %9s %6s  %s\n' package target fuzz_s wall_s execs execs/s new result
failed=0
start_all=$SECONDS
for line in "${targets[@]}"; do
  pkg="${line%%$'\t'*}"
  name="${line##*$'\t'}"
  if [[ -n "${FUZZ_MATCH:-}" ]] && ! [[ "$pkg/$name" =~ $FUZZ_MATCH ]]; then
    continue
  fi
  log="$logdir/$(echo "${pkg#./}" | tr / _)_$name.log"
  t0=$SECONDS
  status=ok
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$dur" -fuzzminimizetime "$minimize" -timeout 0 "${parallel[@]}" "$pkg" >"$log" 2>&1; then
    status=FAIL
    # The Go fuzzer reports "context deadline exceeded" when -fuzztime ends while a worker is
    # still busy with a slow input; without a failing input or panic that is not a finding.
    if grep -q 'context deadline exceeded' "$log" && ! grep -qE 'Failing input written to|panic:|fuzzing process hung|--- FAIL: .*/' "$log"; then
      status="ok (deadline at fuzztime end)"
    else
      failed=1
    fi
  fi
  wall=$((SECONDS - t0))
  # Last progress line: "fuzz: elapsed: 3m0s, execs: 1321213 (7340/sec), new interesting: 146 (total: 157)"
  # (the final line reports 0/sec, so the rate is recomputed from execs and elapsed).
  last="$(grep -E '^fuzz: elapsed: .*execs: [0-9]+' "$log" | tail -n 1 || true)"
  execs="$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")"
  elapsed="$(sed -nE 's/^fuzz: elapsed: ([0-9hms.]+),.*/\1/p' <<<"$last")"
  newi="$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")"
  secs="$(awk -v d="$elapsed" 'BEGIN { t = 0
    while (match(d, /[0-9.]+[hms]/)) {
      v = substr(d, RSTART, RLENGTH - 1); u = substr(d, RSTART + RLENGTH - 1, 1)
      t += (u == "h") ? v * 3600 : (u == "m") ? v * 60 : v
      d = substr(d, RSTART + RLENGTH)
    }
    print t }')"
  rate="?"
  if [[ -n "$execs" && "$secs" != "0" ]]; then
    rate="$(awk -v e="$execs" -v s="$secs" 'BEGIN { printf "%d", e / s }')"
  fi
  printf '%-28s %-28s %7s %7s %12s %9s %6s  %s\n' "${pkg#./}" "$name" "${secs:-?}" "$wall" "${execs:-?}" "$rate" "${newi:-?}" "$status"
  if [[ $status == FAIL* ]]; then
    # Show the failure and where go test stored the failing input.
    grep -E -A25 -- '--- FAIL|panic:|Failing input written to|fuzzing process hung' "$log" | head -n 60 | sed 's/^/    /' || tail -n 40 "$log" | sed 's/^/    /'
  fi
done
echo "fuzz: total wall time $((SECONDS - start_all))s (duration per target: $dur)"
exit "$failed"
