#!/usr/bin/env python3
"""Checks every PromQL expression of the Grafana dashboards and the alert rules:

1. it parses (each is handed to `promtool check rules` as a recording rule);
2. every series it names is in a real scrape of a running Covenant (the file given), or is
   one Prometheus makes itself (`up`).

Usage: check_promql.py SCRAPE_FILE   (exit 0 when everything holds; prints each problem)
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
SYNTHETIC = {"up"}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool",
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "inf", "nan", "le",
}


def expressions():
    out = []
    for f in sorted((ROOT / "ops/grafana/dashboards").glob("*.json")):
        d = json.loads(f.read_text())
        for p in d["panels"]:
            for t in p.get("targets", []):
                out.append((f"{f.name} / {p['title']}", t["expr"]))
    rules = yaml.safe_load((ROOT / "ops/prometheus/alerts.yml").read_text())
    for g in rules["groups"]:
        for r in g["rules"]:
            out.append((f"alerts.yml / {r.get('alert') or r.get('record')}", r["expr"]))
    return out


def series_in(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    e = re.sub(r"\{[^}]*\}", "", e)                       # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                      # range selectors
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)  # label lists
    e = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", e)           # offset durations
    e = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b", " ", e)  # numbers
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def main():
    scrape = pathlib.Path(sys.argv[1]).read_text()
    present = {l.split("{")[0].split(" ")[0] for l in scrape.splitlines() if l and not l.startswith("#")}
    exprs = expressions()
    problems = []
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "check", "rules": [
            {"record": f"check:expr_{i}", "expr": e} for i, (_, e) in enumerate(exprs)]}]}, f)
        rules_file = f.name
    parsed = subprocess.run(["promtool", "check", "rules", rules_file], capture_output=True, text=True)
    if parsed.returncode != 0:
        problems.append(f"promtool could not parse every expression:\n{parsed.stdout}{parsed.stderr}")
    for where, e in exprs:
        for name in sorted(series_in(e) - present - SYNTHETIC):
            problems.append(f"{where}: `{name}` is not in the scrape")
    for p in problems:
        print(p)
    print(f"{len(exprs)} expressions checked, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
