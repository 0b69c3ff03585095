#!/usr/bin/env bash
# Proves that check.py catches what GoNB emits for failing cells: each
# notebooks/testdata/deliberate_*.ipynb is executed and check.py must FAIL on it with the
# expected reason; notebooks/testdata/good.ipynb must pass once executed and fail while
# unexecuted. Exits non-zero if the checker misses anything. Run by `just notebooks`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
nb_require_tools
out="$nb_out/selftest"
rm -rf "$out" && mkdir -p "$out"
check=(/usr/bin/python3 "$nb_scripts/check.py")
td="$nb_repo/notebooks/testdata"
failures=0

# expect NAME STATUS REASON: run check.py on $out/NAME.ipynb, want exit STATUS and REASON in its output.
expect() {
  local name="$1" want_status="$2" want_text="$3" status=0 output
  output="$("${check[@]}" "$out/$name.ipynb" 2>&1)" || status=$?
  if [ "$status" -eq "$want_status" ] && grep -qF -- "$want_text" <<<"$output"; then
    echo "selftest ok: $name: check.py exit $status, found \"$want_text\""
  else
    echo "SELFTEST FAILED: $name: check.py exit $status (want $want_status) without \"$want_text\"; its output:" >&2
    sed 's/^/    /' <<<"$output" >&2
    failures=$((failures + 1))
  fi
}

# An unexecuted notebook must be rejected.
cp "$td/good.ipynb" "$out/unexecuted.ipynb"
expect unexecuted 1 "not executed"

for nb in good deliberate_panic deliberate_compile_error deliberate_exit deliberate_shell_failure; do
  nb_execute "$td/$nb.ipynb" "$out" >"$out/$nb.log" 2>&1 || { cat "$out/$nb.log" >&2; exit 1; }
done
expect good 0 "no errors"
expect deliberate_panic 1 "Go panic in stream stderr: panic: deliberate panic for the checker self-test"
expect deliberate_panic 1 "error output: ERROR: exit status 2"
expect deliberate_compile_error 1 "GoNB HTML error report"
expect deliberate_compile_error 1 "error output: ERROR: failed to run"
expect deliberate_exit 1 "non-zero exit status in stream stderr: exit status 1"
expect deliberate_shell_failure 1 "non-zero exit status in stream stderr: exit status 2"

if [ "$failures" -ne 0 ]; then
  echo "notebook checker self-test: $failures check(s) failed" >&2
  exit 1
fi
echo "notebook checker self-test: all checks passed"
