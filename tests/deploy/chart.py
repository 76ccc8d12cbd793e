"""Rendering the chart once per values set, and reading the rendered objects (tests/deploy).

The NATS subchart is not committed: CI (a fresh clone, no internet) has no deploy/kommo-bridge/charts/.
Everything of this chart is rendered and checked there all the same; what only the subchart renders
(its StatefulSet, Services, ConfigMap) is checked by the tests marked `needs_nats_subchart`, which run
after `make chart-deps` and are otherwise skipped with the reason shown. Set
BRIDGE_REQUIRE_NATS_SUBCHART=1 where the subchart must be there: they then fail instead of skipping."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from functools import cache
from typing import Any

import helm_python as helm
import pytest

from deploy import chartctl

Manifest = dict[str, Any]

RELEASE = "bridge"
NAMESPACE = "bridge"
FULLNAME = "bridge-kommo-bridge"
SERVICE_KEYS = ("gateway", "auth", "router", "kommo-sender", "messenger-sender")
# Workloads that carry a pod template, and where it is.
POD_KINDS = ("Deployment", "StatefulSet", "Job", "Pod")
NATS_NAME = f"{RELEASE}-nats"
# The labels of the NATS chart's server pods (its `nats.selectorLabels`), which this chart's NATS
# NetworkPolicy selects. Stand in for the pods when the subchart is absent; checked against the
# rendered StatefulSet when it is present.
NATS_POD_LABELS = {
    "app.kubernetes.io/name": "nats",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "nats",
}

NATS_SUBCHART_PRESENT = "nats" not in chartctl.missing_dependencies()
# Tests of objects only the NATS subchart renders (the fixture is in tests/deploy/conftest.py).
needs_nats_subchart = pytest.mark.usefixtures("nats_subchart")


def subchart_absent_outcome() -> tuple[str, str]:
    """What a `needs_nats_subchart` test does without the subchart: ("skip" | "fail", why)."""
    reason = f"the NATS subchart is not in {chartctl.CHART_DIR / 'charts'} (run `make chart-deps`)"
    if os.environ.get("BRIDGE_REQUIRE_NATS_SUBCHART", "") not in ("", "0"):
        return "fail", f"BRIDGE_REQUIRE_NATS_SUBCHART is set but {reason}"
    return "skip", reason


@cache
def _effective_values(name: str) -> str:
    with helm.Chart.load(chartctl.CHART_DIR) as chart:
        return json.dumps(chart.merge_values(chartctl.values_set(name)))


def effective_values(name: str) -> dict[str, Any]:
    """The values an install of one CI values set uses: the chart's defaults (values.yaml, and the
    subchart's when present) coalesced with the set, as Helm does."""
    values: dict[str, Any] = json.loads(_effective_values(name))
    return values


def nats_enabled(name: str) -> bool:
    return bool(effective_values(name)["nats"]["enabled"])


@cache
def _render_set(name: str) -> tuple[Manifest, ...]:
    return tuple(chartctl.manifests(chartctl.render(chartctl.values_set(name), release=RELEASE, namespace=NAMESPACE)))


def render_set(name: str) -> list[Manifest]:
    """The objects of one CI values set (rendered once per test session; callers get their own list)."""
    return list(_render_set(name))


def render_with(name: str, overrides: dict[str, Any]) -> list[Manifest]:
    """A CI values set with `overrides` layered on top, like one more `-f` file."""
    values = chartctl.merge_values(chartctl.values_set(name), overrides)
    return chartctl.manifests(chartctl.render(values, release=RELEASE, namespace=NAMESPACE))


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in of_kind(manifests, kind) if m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def component(name: str) -> str:
    return f"{FULLNAME}-{name}"


def pod_spec(workload: Manifest) -> dict[str, Any]:
    if workload["kind"] == "Pod":
        spec: dict[str, Any] = workload["spec"]
        return spec
    template: dict[str, Any] = workload["spec"]["template"]["spec"]
    return template


def pod_labels(workload: Manifest) -> dict[str, str]:
    if workload["kind"] == "Pod":
        labels: dict[str, str] = workload["metadata"]["labels"]
        return labels
    template_labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return template_labels


def workloads(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in POD_KINDS]


def pods_by_name(manifests: list[Manifest], with_nats: bool) -> dict[str, dict[str, str]]:
    """Workload name → its pods' labels. With NATS enabled but its subchart absent (so nothing of it
    rendered), the NATS StatefulSet's pods are stood in for by NATS_POD_LABELS."""
    pods = {w["metadata"]["name"]: pod_labels(w) for w in workloads(manifests)}
    if with_nats and not NATS_SUBCHART_PRESENT:
        assert NATS_NAME not in pods
        pods[NATS_NAME] = dict(NATS_POD_LABELS)
    return pods


def containers(manifests: list[Manifest]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload/container, container, pod spec) of every container, init containers included."""
    for workload in workloads(manifests):
        spec = pod_spec(workload)
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield f"{workload['kind']}/{workload['metadata']['name']}/{container['name']}", container, spec


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """name → value (a plain string) or valueFrom (a dict)."""
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])}


def hook_annotation(manifest: Manifest) -> set[str]:
    hooks = manifest["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    return {hook.strip() for hook in hooks.split(",") if hook.strip()}
