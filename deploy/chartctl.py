"""Lint, render and package the Helm chart without a helm binary, through Helm's Go SDK
(`helm-python-sdk`, the `helm_python` module). Used by `make chart` and by tests/deploy.

    python -m deploy.chartctl deps                      # fetch the NATS subchart into charts/ (online)
    python -m deploy.chartctl lint                      # every values set in deploy/kommo-bridge/ci
    python -m deploy.chartctl lint --allow-missing-deps # the same offline, without the NATS subchart
    python -m deploy.chartctl template -f my-values.yaml [--release NAME] [--namespace NS]
    python -m deploy.chartctl package [--destination dist]

The NATS subchart is declared in Chart.yaml and never committed (charts/ is git-ignored): `deps`
fetches it (`helm dependency update`). Without it (a fresh clone offline, CI), `lint
--allow-missing-deps` and `template` still check and render everything of this chart, only not the
subchart's own objects; `package` refuses.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import helm_python as helm

DEPLOY_DIR = Path(__file__).resolve().parent
CHART_DIR = DEPLOY_DIR / "kommo-bridge"
CI_VALUES_DIR = CHART_DIR / "ci"
# Where the target Kubernetes version matters (kubeVersion constraint, API versions), lint as this one.
KUBE_VERSION = "v1.30.0"
# The one dependency, exactly as Chart.yaml declares it (tests/deploy holds the two together).
NATS_CHART = {
    "name": "nats",
    "version": "2.14.2",
    "repository": "https://nats-io.github.io/k8s/helm/charts/",
    "condition": "nats.enabled",
}
# `helm dependency list` statuses of a dependency that is in charts/ (an archive, or unpacked).
_PRESENT = {"ok", "unpacked"}
# Helm lint's finding for declared dependencies absent from charts/ (a warning, so fatal when strict).
_MISSING_DEPENDENCIES = re.compile(r"chart directory is missing these dependencies: (.+)")

# The values sets CI checks: each is a list of files layered like `helm -f a -f b`.
VALUES_SETS: dict[str, list[str]] = {
    "default": ["default-values.yaml"],
    "existing-secret": ["existing-secret-values.yaml"],
    "sandbox": ["sandbox-values.yaml"],
    "no-hpa": ["default-values.yaml", "no-hpa-values.yaml"],
    "external-nats": ["default-values.yaml", "external-nats-values.yaml"],
}

Manifest = dict[str, Any]
# Helm splits a template's output into documents on `---` lines the same way.
_DOCUMENT_SEPARATOR = re.compile(r"(?:^|\n)---[^\n]*(?=\n|$)")


class ChartError(Exception):
    """The chart does not lint or render; the message says why."""


def merge_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Layer `override` on `base` as `helm -f base -f override` does: maps merge, anything else is
    replaced, and null removes a key."""
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_values(files: Iterable[str | Path]) -> dict[str, Any]:
    """Read and layer values files (YAML, parsed by Helm's own parser)."""
    values: dict[str, Any] = {}
    for file in files:
        path = Path(file)
        if not path.is_absolute() and not path.exists():
            path = CI_VALUES_DIR / path
        values = merge_values(values, helm.values_from_yaml(path.read_text()))
    return values


def values_set(name: str) -> dict[str, Any]:
    return load_values(VALUES_SETS[name])


def dependency_statuses(chart_dir: Path = CHART_DIR) -> dict[str, str]:
    """Every dependency Chart.yaml declares → its status in charts/ (ok, unpacked, missing, wrong
    version, …), as `helm dependency list` reports it."""
    return {d["name"]: d["status"] for d in helm.dependency_list(chart_dir)}


def missing_dependencies(chart_dir: Path = CHART_DIR) -> list[str]:
    """Declared dependencies that are not in charts/ at all (`make chart-deps` fetches them)."""
    return sorted(name for name, status in dependency_statuses(chart_dir).items() if status == "missing")


def lint(
    values: dict[str, Any] | None = None, chart_dir: Path = CHART_DIR, *, allow_missing_deps: bool = False
) -> list[str]:
    """`helm lint --strict` with the subcharts: every finding of severity warning or error, as text.
    Helm's lint only notices a dependency that is absent; one in charts/ that does not match Chart.yaml
    (wrong version, misnamed, corrupt) is reported here too.

    With `allow_missing_deps`, the one finding that declared dependencies are absent from charts/ is
    dropped when exactly those dependencies are missing (not fetched: a fresh clone offline); every
    other finding, including a dependency of the wrong version, still counts."""
    report = helm.lint(chart_dir, values, strict=True, with_subcharts=True, kube_version=KUBE_VERSION)
    statuses = dependency_statuses(chart_dir)
    missing = {name for name, status in statuses.items() if status == "missing"} if allow_missing_deps else set()

    def tolerated(text: str) -> bool:
        found = _MISSING_DEPENDENCIES.search(text)
        return found is not None and {name.strip() for name in found.group(1).split(",")} <= missing

    problems = [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2]
    problems += [error for error in report["errors"] if not any(error in p for p in problems)]
    problems += [
        f"{chart_dir}: dependency {name} in charts/ does not match Chart.yaml ({status}); run `make chart-deps`"
        for name, status in sorted(statuses.items())
        if status not in _PRESENT | {"missing"}  # helm lint reports a missing one itself
    ]
    return [problem for problem in problems if not tolerated(problem)]


def split_documents(text: str) -> list[Manifest]:
    """The Kubernetes objects in one rendered template (empty documents dropped)."""
    documents = []
    for chunk in _DOCUMENT_SEPARATOR.split(text):
        if chunk.strip() and any(line.strip() and not line.lstrip().startswith("#") for line in chunk.splitlines()):
            document = helm.values_from_yaml(chunk)
            if document:
                documents.append(document)
    return documents


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = "bridge",
    namespace: str = "bridge",
    chart_dir: Path = CHART_DIR,
) -> dict[str, list[Manifest]]:
    """Render like `helm template`: template path → its Kubernetes objects (hooks and tests included).

    Helm's SDK renders the subcharts present in charts/; a missing one (see `missing_dependencies`)
    contributes no objects, where `helm template` would refuse to run."""
    with helm.Chart.load(chart_dir) as chart:
        try:
            rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
        except helm.HelmError as exc:
            raise ChartError(str(exc)) from exc
    return {path: split_documents(text) for path, text in sorted(rendered.items()) if not path.endswith("NOTES.txt")}


def manifests(rendered: dict[str, list[Manifest]]) -> list[Manifest]:
    return [document for documents in rendered.values() for document in documents]


def _dump(document: Manifest) -> str:
    """Manifests are shown as JSON (valid YAML): no YAML writer is needed."""
    import json

    return json.dumps(document, indent=2, sort_keys=False)


def _warn_missing_deps(doing: str) -> None:
    missing = missing_dependencies()
    if missing:
        print(
            f"chartctl: {doing} without the subchart(s) {', '.join(missing)} (absent from {CHART_DIR / 'charts'}; "
            "`make chart-deps` fetches them): their objects are not checked",
            file=sys.stderr,
        )


def _cmd_lint(args: argparse.Namespace) -> int:
    sets = {"given files": args.values} if args.values else {name: files for name, files in VALUES_SETS.items()}
    if args.allow_missing_deps:
        _warn_missing_deps("linting")
    failed = False
    for name, files in sets.items():
        problems = lint(load_values(files), allow_missing_deps=args.allow_missing_deps)
        print(f"{'FAIL' if problems else 'ok  '} lint {name}")
        for problem in problems:
            print(f"     {problem}")
        failed = failed or bool(problems)
    return 1 if failed else 0


def _cmd_template(args: argparse.Namespace) -> int:
    _warn_missing_deps("rendering")
    try:
        rendered = render(load_values(args.values), release=args.release, namespace=args.namespace)
    except ChartError as exc:
        print(f"chartctl: {exc}", file=sys.stderr)
        return 1
    for path, documents in rendered.items():
        for document in documents:
            print(f"---\n# Source: {path}\n{_dump(document)}")
    return 0


def _cmd_package(args: argparse.Namespace) -> int:
    missing = missing_dependencies()
    if missing:
        print(f"chartctl: {', '.join(missing)} missing from charts/; run `make chart-deps` first", file=sys.stderr)
        return 1
    problems = lint(values_set("default"))
    if problems:
        print("chartctl: the chart does not lint; not packaged:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    Path(args.destination).mkdir(parents=True, exist_ok=True)
    print(helm.package(CHART_DIR, destination=args.destination))
    return 0


def _cmd_deps(args: argparse.Namespace) -> int:
    """`helm dependency update`: fetch the dependencies Chart.yaml declares (the NATS chart, from its
    official repository) into charts/ and write Chart.lock; both are git-ignored. Needs network."""
    statuses = dependency_statuses()
    if all(status in _PRESENT for status in statuses.values()):
        print(f"every dependency is in {CHART_DIR / 'charts'}: {', '.join(sorted(statuses))}")
        return 0
    try:
        helm.dependency_update(CHART_DIR)
    except helm.HelmError as exc:
        print(f"chartctl: could not fetch the dependencies (network?): {exc}", file=sys.stderr)
        return 1
    statuses = dependency_statuses()
    for name, status in sorted(statuses.items()):
        print(f"{name}: {status}")
    return 0 if all(status in _PRESENT for status in statuses.values()) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chartctl", description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    lint_parser = commands.add_parser("lint", help="lint the chart (strict, with subcharts)")
    lint_parser.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
    lint_parser.add_argument(
        "--allow-missing-deps",
        action="store_true",
        help="lint without the subcharts when they are not fetched (offline); any other finding still fails",
    )
    lint_parser.set_defaults(run=_cmd_lint)
    template = commands.add_parser("template", help="render the chart's manifests")
    template.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
    template.add_argument("--release", default="bridge")
    template.add_argument("--namespace", default="bridge")
    template.set_defaults(run=_cmd_template)
    package = commands.add_parser("package", help="lint, then package the chart into a .tgz")
    package.add_argument("--destination", default="dist")
    package.set_defaults(run=_cmd_package)
    deps = commands.add_parser("deps", help="fetch the declared subcharts into charts/ (helm dependency update)")
    deps.set_defaults(run=_cmd_deps)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
