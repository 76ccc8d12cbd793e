"""The Prometheus alert rules and the Grafana dashboard: valid PromQL (parsed by promql-parser), only
the metrics the services expose, every such metric watched, every runbook link pointing somewhere."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import promql_parser
import pytest

from deploy import chartctl

FILES = chartctl.CHART_DIR / "files"
OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
# The metrics contract of the services (see docs/operations.md, "Reading the dashboard").
BRIDGE_METRICS = {
    "bridge_messages_total": {"service", "platform", "direction", "outcome"},
    "bridge_hop_seconds_bucket": {"service", "hop", "le"},
    "bridge_consumer_pending": {"service", "stream"},
    "bridge_dead_letters_total": {"service", "stream"},
    "bridge_token_refresh_failures_total": set(),
    "bridge_platform_rate_limited_total": {"service", "platform"},
    "bridge_webhooks_total": {"platform", "status"},
    "bridge_media_downloads_total": {"platform", "status"},
    "bridge_spool_depth": set(),
    "bridge_status_late_failures_total": {"service"},
}
# Added by Prometheus / the ServiceMonitor to every series.
TARGET_LABELS = {"namespace", "pod", "job", "instance", "bridge_component"}
OUTCOMES = {"delivered", "failed", "duplicate", "dead_lettered", "rejected"}


def alert_rules() -> list[dict[str, Any]]:
    groups = helm.values_from_yaml((FILES / "prometheus-rules.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FILES / "grafana-dashboard.json").read_text())
    return loaded


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])]


def as_promql(grafana_expr: str) -> str:
    """Grafana's variables replaced by what Grafana would send."""
    return grafana_expr.replace("$__rate_interval", "5m").replace("$namespace", ".*")


def selectors(expr: promql_parser.Expr) -> Iterator[promql_parser.VectorSelector]:
    """Every vector selector in an expression tree."""
    if isinstance(expr, promql_parser.VectorSelector):
        yield expr
        return
    for attribute in ("expr", "lhs", "rhs", "vector_selector", "param"):
        child = getattr(expr, attribute, None)
        if isinstance(child, promql_parser.Expr):
            yield from selectors(child)
    for child in getattr(expr, "args", None) or []:
        if isinstance(child, promql_parser.Expr):
            yield from selectors(child)


def used_metrics(expressions: list[str]) -> dict[str, set[str]]:
    """metric name → label names its matchers use, over all expressions."""
    used: dict[str, set[str]] = {}
    for text in expressions:
        for selector in selectors(promql_parser.parse(text)):
            labels = {m.name for m in selector.matchers.matchers}
            used.setdefault(str(selector.name), set()).update(labels)
    return used


def test_selector_walk_finds_nested_metrics() -> None:
    found = used_metrics(['histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="1"}[5m]))) / on() b > 1'])
    assert found == {"a_bucket": {"x"}, "b": set()}


def test_every_alert_is_valid_and_actionable() -> None:
    rules = alert_rules()
    assert len(rules) >= 8
    assert len({rule["alert"] for rule in rules}) == len(rules)
    for rule in rules:
        promql_parser.parse(rule["expr"])
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule["alert"]


def test_broken_promql_is_rejected() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(bridge_messages_total[5m])")


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_only_contract_metrics_and_labels_are_used(source: str) -> None:
    texts = [r["expr"] for r in alert_rules()] if source == "alerts" else [as_promql(q) for q in dashboard_queries()]
    used = used_metrics(texts)
    for metric, labels in used.items():
        if metric == "up":
            assert labels <= {"bridge_component", "namespace"}
            continue
        assert metric in BRIDGE_METRICS, f"{source} uses {metric}, which no service exposes"
        assert labels <= BRIDGE_METRICS[metric] | TARGET_LABELS, (metric, labels)
    watched = {name.removesuffix("_bucket") for name in used}
    assert {name.removesuffix("_bucket") for name in BRIDGE_METRICS} <= watched, f"{source} misses a metric"


def test_outcome_matchers_use_contract_values() -> None:
    texts = [r["expr"] for r in alert_rules()] + dashboard_queries()
    for values in re.findall(r'outcome=~?"([^"]+)"', "\n".join(texts)):
        assert set(values.split("|")) <= OUTCOMES, values


def test_runbook_links_point_at_operations_headings() -> None:
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in alert_rules():
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "docs/operations.md" and anchor in headings, rule["alert"]


def test_dashboard_is_importable() -> None:
    board = dashboard()
    assert board["uid"] == "kommo-bridge" and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and panel["description"], panel["title"]
        for target in panel["targets"]:
            assert 'namespace=~"$namespace"' in target["expr"], panel["title"]
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
