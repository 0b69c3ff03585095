#!/usr/bin/env python3
"""Merge result arrays of `enflow bench --out` and scripts/bench/torch_reference.py --out into the
Markdown performance table (enflow SimpleGo, enflow XLA CPU, one column per PyTorch run; wall-time
speed-ups against the fastest PyTorch run of each case)."""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import write_table  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True, help="Markdown file to write")
    p.add_argument("results", nargs="+", help="JSON arrays or JSON Lines of results (missing files are skipped)")
    a = p.parse_args()
    go, torch = [], []
    for path in a.results:
        if not os.path.exists(path):
            print(f"table: {path} missing, skipped", file=sys.stderr)
            continue
        with open(path) as f:
            text = f.read()
        try:
            rows = json.loads(text)
        except json.JSONDecodeError:  # JSON Lines
            rows = [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]
        for r in rows:
            (torch if str(r.get("backend", "")).startswith("pytorch") else go).append(r)
    write_table(a.out, go, torch)


if __name__ == "__main__":
    main()
