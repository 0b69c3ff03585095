#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/../../.."
O=reports/results/bench_2026-12-07c
# A record of one run: the cases of `./just bench` (justfile.bench) cut to the four #16 targets,
# each repeated 3 times on every engine. Shared data: $ENFLOW_SHARED, default ../shared.
export ENFLOW_SHARED=${ENFLOW_SHARED:-$(cd .. && pwd)/shared}
C='dw4/train_iter,lj13/train_iter,qm9/sample_batched,qm9/sample_single'
Q='--qm9-molecules 30 --qm9-single 4'
echo "start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
bin/enflow bench --json --cases "$C" --repeats 3 $Q --out $O/go.json > $O/go.jsonl
echo "go done $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 scripts/bench/torch_reference.py --en-flows .tools/en_flows --shared "$ENFLOW_SHARED" --pydeps .tools/pydeps --cases "$C" --repeats 3 $Q --go-json $O/go.json --out $O/torch.json > $O/torch.jsonl
echo "torch1.13 done $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
.tools/torch2/bin/python scripts/bench/torch_reference.py --en-flows .tools/en_flows --shared "$ENFLOW_SHARED" --cases "$C" --repeats 3 $Q --go-json $O/go.json --out $O/torch2.json > $O/torch2.jsonl
echo "torch2 done $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
.tools/torch2/bin/python scripts/bench/torch_reference.py --en-flows .tools/en_flows --shared "$ENFLOW_SHARED" --compile --cases "$C" --repeats 3 $Q --go-json $O/go.json --out $O/torch2-compile.json > $O/torch2-compile.jsonl
echo "torch2-compile done $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 scripts/bench/table.py --out $O/table.md $O/go.json $O/torch.json $O/torch2.json $O/torch2-compile.json
echo "all done $(date -u +%FT%TZ)"
