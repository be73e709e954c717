#!/usr/bin/env python3
"""`helm lint` and `helm template` for machines without the helm binary.

Uses Helm's own Go code (the template engine, chart loader and linter), bundled as a shared
library in the PyPI package `helm-python-sdk`, so what passes here is what `helm` would do.
No cluster is contacted: `lookup` returns nothing.

    python3 deploy/helm/render.py lint     deploy/helm/fhirgate [-f values.yaml ...]
    python3 deploy/helm/render.py template deploy/helm/fhirgate [-f values.yaml ...] [--name R]

`template` prints the manifests as one multi-document YAML stream on stdout (the order of
`helm template`: file name order), `lint` prints the findings and fails on warnings or
errors (`helm lint --strict`). Exit status: 0 ok, 1 findings or render error, 2 usage.
"""

import argparse
import sys

import yaml

try:
    import helm_python
except ImportError:  # the caller (scripts/validate-deploy.sh) installs it
    sys.exit("render.py: needs the PyPI package helm-python-sdk (pip install helm-python-sdk)")

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def merged_values(files):
    values = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            layer = yaml.safe_load(f) or {}
        values = deep_merge(values, layer)
    return values


def deep_merge(base, layer):
    out = dict(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def lint(args):
    report = helm_python.lint(
        args.chart,
        merged_values(args.values) or None,
        strict=True,
        kube_version=args.kube_version,
    )
    bad = 0
    for msg in report.get("messages", []):
        severity = SEVERITY.get(msg.get("severity"), "?")
        print(f"[{severity}] {msg.get('path')}: {msg.get('error')}")
        if msg.get("severity", 0) >= 2:
            bad += 1
    for err in report.get("errors") or []:
        print(f"[ERROR] {err}")
        bad += 1
    charts = report.get("total_charts_linted", 0)
    print(f"{charts} chart(s) linted, {bad} failed finding(s)")
    return 1 if bad or charts == 0 else 0


def template(args):
    chart = helm_python.Chart.load(args.chart)
    try:
        manifests = chart.render(
            merged_values(args.values) or None,
            name=args.name,
            namespace=args.namespace,
            is_install=True,
        )
    except helm_python.errors.HelmError as err:  # render and values errors
        print(f"render.py: {err}", file=sys.stderr)
        return 1
    for path in sorted(manifests):
        body = manifests[path]
        if path.endswith("NOTES.txt") or not body.strip():
            continue
        print(f"---\n# Source: {path}\n{body.strip()}")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["lint", "template"])
    parser.add_argument("chart")
    parser.add_argument("-f", "--values", action="append", default=[])
    parser.add_argument("--name", default="fhirgate")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--kube-version", default="v1.30.0")
    args = parser.parse_args()
    return lint(args) if args.command == "lint" else template(args)


if __name__ == "__main__":
    sys.exit(main())
