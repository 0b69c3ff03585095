#!/usr/bin/env bash
# `just notebooks`: execute each notebook with the GoNB kernel, check it, export it to HTML.
#   scripts/notebooks/run.sh [NOTEBOOK.ipynb...]     (default: notebooks/*.ipynb)
# Steps, each fatal on failure (the notebooks are all run before failing, to report them all):
#   1. the committed notebooks carry no outputs (check.py --clean);
#   2. the checker self-test (selftest.sh): check.py must FAIL on notebooks that panic, do not
#      compile, exit non-zero or run a failing shell command, and pass a good one;
#   3. per notebook: jupyter nbconvert --execute into $ENFLOW_OUT/notebooks/NAME.ipynb, check.py
#      on it, then HTML export to $ENFLOW_OUT/notebooks/NAME.html. Timings go to summary.txt.
# Requires scripts/notebooks/setup.sh (just notebooks-setup) to have run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
nb_require_tools
cd "$nb_repo"
mkdir -p "$nb_out"
rm -f "$JUPYTER_DATA_DIR"/logs/gonb* 2>/dev/null || true
check=(/usr/bin/python3 "$nb_scripts/check.py")

if [ "$#" -gt 0 ]; then notebooks=("$@"); else notebooks=(notebooks/*.ipynb); fi

echo "== notebooks: committed notebooks carry no outputs"
"${check[@]}" --clean notebooks/*.ipynb notebooks/testdata/*.ipynb

echo "== notebooks: checker self-test"
bash "$nb_scripts/selftest.sh"

budget=120   # seconds; a slower notebook is reported (not failed: CI machines are shared)
failed=()
summary="$nb_out/summary.txt"
: >"$summary"
for nb in "${notebooks[@]}"; do
  name="$(basename "$nb" .ipynb)"
  echo "== notebooks: $name: executing"
  start=$(date +%s.%N)
  status=ok
  if ! nb_execute "$nb" "$nb_out" >"$nb_out/$name.log" 2>&1; then
    echo "nbconvert failed on $nb; its log ($nb_out/$name.log):" >&2
    tail -n 40 "$nb_out/$name.log" >&2
    status=FAILED
  fi
  secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  if [ "$status" = ok ] && ! "${check[@]}" "$nb_out/$name.ipynb"; then
    status=FAILED
  fi
  if [ -f "$nb_out/$name.ipynb" ]; then
    nb_html "$nb_out/$name.ipynb" >>"$nb_out/$name.log" 2>&1 || { echo "HTML export of $name failed" >&2; status=FAILED; }
  fi
  note=""
  if awk -v s="$secs" -v b="$budget" 'BEGIN { exit !(s > b) }'; then note=" (over the ${budget}s budget)"; fi
  printf '%-28s %-7s %6ss%s\n' "$name" "$status" "$secs" "$note" | tee -a "$summary"
  [ "$status" = ok ] || failed+=("$name")
done

echo "== notebooks: outputs in $nb_out (*.ipynb, *.html, summary.txt)"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "notebooks FAILED: ${failed[*]}" >&2
  echo "notebooks: $((${#notebooks[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
  ls "$JUPYTER_DATA_DIR"/logs/gonb.*ERROR* >/dev/null 2>&1 && echo "kernel logs: $JUPYTER_DATA_DIR/logs" >&2
  exit 1
fi
echo "notebooks: ${#notebooks[@]} passed, 0 failed"
