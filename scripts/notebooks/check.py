#!/usr/bin/python3
"""Check executed GoNB notebooks for failures (Python 3 standard library only).

Usage:
    check.py NOTEBOOK.ipynb...           executed notebooks: fail on any error output
    check.py --clean NOTEBOOK.ipynb...   committed notebooks: fail if any output is stored

Exit status: 0 if every notebook is clean, 1 if any problem was found (each one is
printed as "NOTEBOOK: cell I (In [N]): REASON: TEXT"), 2 on bad usage or unreadable files.

An executed notebook fails on:
  * an output of type "error" (GoNB sends one for a failed build, `go get` or a Go
    program that exits non-zero: ename "ERROR", evalue e.g. "exit status 2");
  * stream or display text containing
      - "panic:"                       Go runtime panic,
      - "fatal error:"                 Go runtime fatal error (e.g. deadlock),
      - "exit status N" with N != 0    a cell program or a `!` shell command failed
                                       (GoNB prints only this for a failing `!cmd`,
                                       without an "error" output),
      - "goroutine N [...]:"           a goroutine trace,
      - GoNB's error markers: "[[ Cell [" (stack lines GoNB maps back to cells),
        "gonb-err-" (CSS classes of GoNB's HTML error report), 'failed to run "'
        (GoNB's message when go build / go get / goimports fails);
  * a code cell with source but no execution_count (it was never executed).

A committed notebook (--clean) fails on any stored output or execution_count: outputs
are produced by `just notebooks` into out/notebooks/ and are never committed; run
scripts/notebooks/strip.py to clear them.
"""

import html
import json
import re
import sys

PATTERNS = [
    ("Go panic", re.compile(r"panic:")),
    ("Go fatal error", re.compile(r"fatal error:")),
    ("non-zero exit status", re.compile(r"exit status [1-9][0-9]*")),
    ("goroutine trace", re.compile(r"goroutine [0-9]+ \[")),
    ("GoNB cell error marker", re.compile(r"\[\[ Cell \[")),
    ("GoNB HTML error report", re.compile(r"gonb-err-")),
    ("GoNB failed command", re.compile(r'failed to run "')),
]

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TAGS = re.compile(r"<[^>]*>")
STYLE = re.compile(r"<style.*?</style>", re.S)


def text_of(value):
    """Jupyter stores multi-line strings either as a string or a list of lines."""
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def readable(line):
    """The offending line without ANSI colours and HTML tags, shortened."""
    line = html.unescape(TAGS.sub("", ANSI.sub("", line))).strip()
    return line if len(line) <= 300 else line[:297] + "..."


def output_texts(output):
    """(kind, text) pairs of an output that are searched for error patterns."""
    otype = output.get("output_type", "")
    if otype == "stream":
        yield "stream " + output.get("name", "?"), text_of(output.get("text", ""))
    elif otype in ("display_data", "execute_result", "update_display_data"):
        for mime, value in sorted(output.get("data", {}).items()):
            if mime.startswith("text/") or mime in ("image/svg+xml",):
                yield otype + " " + mime, text_of(value)


def find_pattern(text):
    """First (reason, line) of text matching an error pattern, or None."""
    for line in text.splitlines() or [text]:
        for reason, rx in PATTERNS:
            if rx.search(line):
                # GoNB's HTML report puts the message on the line after the marker:
                # show the whole report's text in that case.
                shown = readable(line)
                if reason == "GoNB HTML error report" or not shown:
                    shown = readable(" ".join(TAGS.sub(" ", STYLE.sub("", text)).split()))
                return reason, shown
    return None


def cell_label(index, cell):
    count = cell.get("execution_count")
    return "cell %d (In [%s])" % (index, count if count is not None else " ")


def check_executed(path, nb):
    problems = []
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        label = cell_label(index, cell)
        if text_of(cell.get("source", "")).strip() and cell.get("execution_count") is None:
            problems.append((label, "not executed", readable(text_of(cell.get("source", "")).splitlines()[0])))
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                msg = "%s: %s" % (output.get("ename", ""), output.get("evalue", ""))
                problems.append((label, "error output", readable(" ".join(msg.split()))))
                continue
            for kind, text in output_texts(output):
                found = find_pattern(text)
                if found:
                    reason, line = found
                    problems.append((label, "%s in %s" % (reason, kind), line))
    return problems


def check_clean(path, nb):
    problems = []
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            problems.append((cell_label(index, cell), "committed outputs",
                             "%d output(s); run scripts/notebooks/strip.py" % len(cell["outputs"])))
        elif cell.get("execution_count") is not None:
            problems.append((cell_label(index, cell), "committed execution_count",
                             "run scripts/notebooks/strip.py"))
    return problems


def main(argv):
    args = argv[1:]
    clean = False
    if args and args[0] == "--clean":
        clean, args = True, args[1:]
    if not args or any(a.startswith("-") for a in args):
        sys.stderr.write(__doc__)
        return 2
    failed = 0
    for path in args:
        try:
            with open(path, encoding="utf-8") as f:
                nb = json.load(f)
        except (OSError, ValueError) as err:
            print("%s: cannot read notebook: %s" % (path, err))
            return 2
        problems = (check_clean if clean else check_executed)(path, nb)
        for label, reason, text in problems:
            print("%s: %s: %s: %s" % (path, label, reason, text))
        if problems:
            failed += 1
        else:
            print("%s: ok (%s)" % (path, "no outputs" if clean else "%d code cells executed, no errors" % sum(
                1 for c in nb.get("cells", []) if c.get("cell_type") == "code")))
    if failed:
        print("FAIL: %d of %d notebook(s) have problems" % (failed, len(args)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
