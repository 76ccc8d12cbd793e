"""Rendering the chart once per values set, and reading the rendered objects (tests/deploy)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from deploy import chartctl

Manifest = dict[str, Any]

RELEASE = "bridge"
NAMESPACE = "bridge"
FULLNAME = "bridge-kommo-bridge"
SERVICE_KEYS = ("gateway", "auth", "router", "kommo-sender", "messenger-sender")
# Workloads that carry a pod template, and where it is.
POD_KINDS = ("Deployment", "StatefulSet", "Job", "Pod")


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
