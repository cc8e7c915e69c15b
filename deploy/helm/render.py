#!/usr/bin/env python3
"""Renders the kraken chart offline, as `helm lint` and `helm template` would.

    render.py [--values FILE]... --out DIR [--configs DIR]

Rendering goes through helm-python-sdk, which links Helm's own Go SDK, so
the templates are run by the real template engine (Sprig functions,
value coalescing, `required` and `fail`) without a helm binary or a
cluster. Values files are merged in order over the chart's values.yaml,
as `helm template -f A -f B` does.

--out gets one manifest file per template and all.yaml with every object.
--configs gets each component's TOML file and render-config.sh, taken
from the rendered ConfigMaps, and the name of origin 0's pod, for
deploy/check.sh to run through the binaries. The exit code is non-zero on a lint error or a failed render.
"""

import argparse
import pathlib
import sys

import helm_python as helm
import yaml

CHART = pathlib.Path(__file__).resolve().parent / "kraken"
RELEASE = "kraken"
NAMESPACE = "kraken"
SEVERITY = {0: "unknown", 1: "info", 2: "warning", 3: "error"}


def merge(base, over):
    """Merges `over` into `base` the way Helm merges values files."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def load_values(paths):
    values = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            merge(values, yaml.safe_load(f) or {})
    return values


def lint(values):
    report = helm.lint(str(CHART), values, strict=True)
    for message in report["messages"]:
        print(f"  lint {SEVERITY.get(message['severity'], '?')}: "
              f"{message['path']}: {message['error']}")
    failed = [m for m in report["messages"] if m["severity"] >= 2]
    return not (failed or report["errors"])


def render(values, out):
    out.mkdir(parents=True, exist_ok=True)
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE,
                                 is_install=True)
    documents = []
    for template, text in sorted(manifests.items()):
        name = pathlib.PurePosixPath(template).name
        if not text.strip() or name == "NOTES.txt":
            continue
        (out / name).write_text(text, encoding="utf-8")
        documents.extend(d for d in yaml.safe_load_all(text) if d)
    with open(out / "all.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump_all(documents, f, sort_keys=False)
    return documents


def extract_configs(documents, configs):
    """Writes the .toml and .sh entries of the rendered ConfigMaps, and the
    name of the first origin pod (origin-pod-name), which its config must
    find among the members."""
    configs.mkdir(parents=True, exist_ok=True)
    written = []
    for doc in documents:
        if doc.get("kind") == "StatefulSet" and doc["metadata"]["name"].endswith("-origin"):
            (configs / "origin-pod-name").write_text(doc["metadata"]["name"] + "-0")
            written.append("origin-pod-name")
        if doc.get("kind") != "ConfigMap":
            continue
        for key, text in (doc.get("data") or {}).items():
            if key.endswith((".toml", ".sh")):
                (configs / key).write_text(text, encoding="utf-8")
                written.append(key)
    return sorted(written)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", action="append", default=[],
                        help="a values file; repeat to layer several")
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--configs", type=pathlib.Path)
    args = parser.parse_args()

    values = load_values(args.values)
    if not lint(values):
        print("error: helm lint found problems", file=sys.stderr)
        return 1
    try:
        documents = render(values, args.out)
    except helm.HelmError as e:
        print(f"error: the chart does not render: {e}", file=sys.stderr)
        return 1
    kinds = sorted({f"{d['kind']}/{d['metadata']['name']}" for d in documents})
    print(f"  rendered {len(documents)} objects: {', '.join(kinds)}")
    if args.configs:
        written = extract_configs(documents, args.configs)
        print(f"  config files: {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
