#!/usr/bin/env bash
# Stage the small files of a job state directory that is a committed reproduction record
# (reports/results/<spec>/, e.g. jobs/table1_dw4.toml's state_dir) for `git commit`:
#
#   results/*.parquet                     every result part (immutable, a few KB each)
#   manifests/*.json                      the unit ids of the spec's latest expansion
#   units/*/{unit,done}.json, attempts.jsonl
#   units/*/run*/{run,model,result}.json, metrics.csv, best/   (best/: the best-validation model)
#   units/*/samples.parquet               an evaluation unit's samples (when under 1 MB)
#   the newest checkpoint pair of every unit that has not finished yet, so that the next
#   `enflow jobs run` resumes it instead of restarting it.
#
# Rolling checkpoints of finished units, metrics.parquet (metrics.csv holds the same), the
# child processes' log.txt (hundreds of KB per unit) and lock files stay out; tracked files
# that are gone from the directory (a committed mid-run checkpoint) are staged as removed. Usage: scripts/record/stage.sh reports/results/table1_dw4 [--dry-run]
set -euo pipefail
dir="${1:?usage: stage.sh STATE_DIR [--dry-run]}"
dry="${2:-}"
[ -d "$dir/units" ] || { echo "stage.sh: $dir has no units/ directory: not a job state directory" >&2; exit 1; }
files=()
shopt -s nullglob
for f in "$dir"/results/*.parquet "$dir"/manifests/*.json; do files+=("$f"); done
for u in "$dir"/units/*/; do
    u="${u%/}"
    for f in "$u"/unit.json "$u"/done.json "$u"/attempts.jsonl; do [ -f "$f" ] && files+=("$f"); done
    if [ -f "$u/samples.parquet" ] && [ "$(stat -c %s "$u/samples.parquet")" -lt 1048576 ]; then files+=("$u/samples.parquet"); fi
    for r in "$u"/run "$u"/finetune; do
        [ -d "$r" ] || continue
        for f in "$r"/run.json "$r"/model.json "$r"/result.json "$r"/metrics.csv; do [ -f "$f" ] && files+=("$f"); done
        for f in "$r"/best/*; do files+=("$f"); done
        if [ ! -f "$u/done.json" ]; then # unfinished: keep the newest checkpoint for --resume
            newest=$(ls "$r"/checkpoint-*.json 2>/dev/null | sort | tail -1 || true)
            if [ -n "$newest" ]; then files+=("$newest" "${newest%.json}.bin"); fi
        fi
    done
done
if [ "$dry" = "--dry-run" ]; then printf '%s\n' "${files[@]}"; exit 0; fi
git add -f -- "${files[@]}"
# Tracked files the run has since removed (e.g. the mid-run checkpoint of a unit that has now
# finished) leave the record too.
git add -u -- "$dir"
echo "stage.sh: staged ${#files[@]} files of $dir ($(du -ch "${files[@]}" | tail -1 | cut -f1))" >&2
