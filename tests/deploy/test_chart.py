"""The Helm chart, linted and rendered offline through Helm's Go SDK (helm-python-sdk), and the
rendered objects checked: workloads, probes, security, NetworkPolicies, hooks, schema.

The NATS subchart is declared, not committed: without it (CI) every values set is linted and rendered
all the same, and NATS is checked on its declaration and its values; with it (`make chart-deps`) the
`needs_nats_subchart` tests check what it renders too (see tests/deploy/chart.py)."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from deploy import chartctl
from tests.deploy.chart import (
    FULLNAME,
    NAMESPACE,
    NATS_NAME,
    NATS_POD_LABELS,
    NATS_SUBCHART_PRESENT,
    RELEASE,
    SERVICE_KEYS,
    Manifest,
    component,
    containers,
    effective_values,
    env_of,
    hook_annotation,
    named,
    nats_enabled,
    needs_nats_subchart,
    of_kind,
    pod_labels,
    pod_spec,
    pods_by_name,
    render_set,
    render_with,
    workloads,
)

VALUES_SETS = sorted(chartctl.VALUES_SETS)
ROOT = Path(__file__).resolve().parents[2]


# --- lint and dependency ---------------------------------------------------------------------------


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_chart_lints_without_warnings(values_set: str) -> None:
    """Strict lint of every values set; without the NATS subchart only its absence is forgiven."""
    assert chartctl.lint(chartctl.values_set(values_set), allow_missing_deps=True) == []


def test_lint_forgives_only_the_absent_subchart() -> None:
    """Strict lint without the allowance: clean with the subchart, exactly its absence without it."""
    problems = chartctl.lint(chartctl.values_set("default"))
    if NATS_SUBCHART_PRESENT:
        assert problems == []
    else:
        assert problems == [f"{chartctl.CHART_DIR}: chart directory is missing these dependencies: nats"]


def test_lint_still_reports_a_dependency_of_the_wrong_version(tmp_path: Path) -> None:
    """The allowance covers a subchart that is not there, not one that does not match Chart.yaml."""
    chart = tmp_path / "kommo-bridge"
    shutil.copytree(chartctl.CHART_DIR, chart, ignore=shutil.ignore_patterns("charts"))
    (chart / "charts" / "nats").mkdir(parents=True)
    (chart / "charts" / "nats" / "Chart.yaml").write_text("apiVersion: v2\nname: nats\nversion: 2.0.0\n")
    assert chartctl.dependency_statuses(chart) == {"nats": "wrong version"}
    problems = chartctl.lint(chartctl.values_set("default"), chart_dir=chart, allow_missing_deps=True)
    assert problems == [
        f"{chart}: dependency nats in charts/ does not match Chart.yaml (wrong version); run `make chart-deps`"
    ]


def test_lint_reports_a_broken_template(tmp_path: Path) -> None:
    """The lint above can fail: a chart copy with a template error is reported."""
    broken = tmp_path / "kommo-bridge"
    shutil.copytree(chartctl.CHART_DIR, broken)
    (broken / "templates" / "broken.yaml").write_text("kind: ConfigMap\nmetadata: {{ .Values.nope.nested }}\n")
    problems = chartctl.lint(chartctl.values_set("default"), chart_dir=broken, allow_missing_deps=True)
    assert any("broken.yaml" in problem for problem in problems), problems


def test_chart_declares_the_official_nats_chart() -> None:
    with helm.Chart.load(chartctl.CHART_DIR) as chart:
        declared = chart.metadata["dependencies"]
    assert declared == [
        {
            "name": "nats",
            "version": "2.14.2",
            "repository": "https://nats-io.github.io/k8s/helm/charts/",
            "condition": "nats.enabled",
        }
    ]
    assert declared[0] == chartctl.NATS_CHART
    # Either fetched at that version (an archive or unpacked), or not fetched at all: never another.
    [status] = chartctl.dependency_statuses().values()
    assert status in ({"ok", "unpacked"} if NATS_SUBCHART_PRESENT else {"missing"})


def test_the_subchart_is_never_committed() -> None:
    """Fetched third-party code stays out of git: charts/ (and Chart.lock) are ignored, nothing in
    them is tracked."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git work tree")
    fetched = ["deploy/kommo-bridge/charts/nats/Chart.yaml", "deploy/kommo-bridge/charts/nats-2.14.2.tgz"]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *fetched, "deploy/kommo-bridge/Chart.lock"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ignored.stdout.split() == [*fetched, "deploy/kommo-bridge/Chart.lock"], ignored.stderr
    tracked = subprocess.run(
        ["git", "ls-files", "deploy/kommo-bridge/charts"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert tracked.stdout == ""


@needs_nats_subchart
def test_fetched_nats_chart_is_the_declared_one() -> None:
    with helm.Chart.load(chartctl.CHART_DIR) as chart:
        loaded = {d["name"]: d for d in chart.dependencies}
    assert loaded["nats"]["version"] == chartctl.NATS_CHART["version"]
    assert loaded["nats"]["home"] == "http://github.com/nats-io/k8s"


def test_nats_values_make_a_three_node_jetstream_cluster_with_file_storage() -> None:
    """What the subchart receives (checked on the values: the subchart may be absent)."""
    values = effective_values("default")
    nats = values["nats"]
    assert nats["enabled"] is True
    assert nats["config"]["cluster"]["enabled"] is True and nats["config"]["cluster"]["replicas"] == 3
    jetstream = nats["config"]["jetstream"]
    assert jetstream["enabled"] is True
    assert jetstream["memoryStore"]["enabled"] is False
    assert jetstream["fileStore"]["enabled"] is True and jetstream["fileStore"]["dir"] == "/data"
    assert jetstream["fileStore"]["pvc"]["enabled"] is True and jetstream["fileStore"]["pvc"]["size"] == "10Gi"
    # One NATS node per Kubernetes node, so losing a node loses one replica of each stream.
    spread = nats["podTemplate"]["topologySpreadConstraints"]["kubernetes.io/hostname"]
    assert spread == {"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}
    assert nats["natsBox"]["enabled"] is False
    # The bridge talks to the NATS chart's client Service, with streams replicated on all three nodes.
    bridge_config = named(render_set("default"), "ConfigMap", FULLNAME)["data"]
    assert bridge_config["BRIDGE_NATS_URL"] == f"nats://{NATS_NAME}:4222"
    assert bridge_config["BRIDGE_STREAM_REPLICAS"] == "3" == str(values["config"]["streamReplicas"])


def test_nats_values_run_it_non_root_with_a_read_only_root_and_resources() -> None:
    nats = effective_values("default")["nats"]
    hardened = {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert nats["container"]["merge"]["securityContext"] == hardened
    assert nats["reloader"]["merge"]["securityContext"] == hardened
    pod = nats["podTemplate"]["merge"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0 and pod["fsGroup"] == pod["runAsGroup"]
    for resources in (nats["container"]["resources"], nats["reloader"]["merge"]["resources"]):
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[bound])


@needs_nats_subchart
def test_nats_values_are_all_known_to_the_subchart() -> None:
    """A misspelt key under `nats:` would be ignored by the NATS chart without a word."""
    ours = helm.values_from_yaml((chartctl.CHART_DIR / "values.yaml").read_text())["nats"]

    def unknown(mine: dict[str, Any], defaults: Any, path: str) -> list[str]:
        if not isinstance(defaults, dict) or not defaults:
            return []  # a free-form map (merge patches, constraints keyed by topology key) or a leaf
        found = []
        for key, value in mine.items():
            if key not in defaults:
                found.append(f"{path}{key}")
            elif isinstance(value, dict):
                found += unknown(value, defaults[key], f"{path}{key}.")
        return found

    # `enabled` is the dependency's condition, read by Helm, not by the NATS chart.
    assert unknown({k: v for k, v in ours.items() if k != "enabled"}, _subchart_defaults(), "nats.") == []


def _subchart_defaults() -> dict[str, Any]:
    charts = chartctl.CHART_DIR / "charts"
    source = charts / "nats" if (charts / "nats").is_dir() else next(charts.glob("nats-*.tgz"))
    with helm.Chart.load(source) as subchart:
        return subchart.values


@needs_nats_subchart
def test_nats_subchart_renders_a_three_node_jetstream_cluster_with_file_storage() -> None:
    manifests = render_set("default")
    statefulset = named(manifests, "StatefulSet", NATS_NAME)
    assert statefulset["spec"]["replicas"] == 3
    claims = statefulset["spec"]["volumeClaimTemplates"]
    assert claims and claims[0]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    config = named(manifests, "ConfigMap", f"{NATS_NAME}-config")["data"]["nats.conf"]
    assert '"store_dir": "/data"' in config and '"max_memory_store": 0' in config
    assert len(re.findall(r"nats://bridge-nats-\d\.bridge-nats-headless:6222", config)) == 3
    # BRIDGE_NATS_URL names the NATS chart's client Service, and the NetworkPolicy its pods.
    client_service = named(manifests, "Service", NATS_NAME)
    bridge_config = named(manifests, "ConfigMap", FULLNAME)["data"]
    assert bridge_config["BRIDGE_NATS_URL"] == f"nats://{client_service['metadata']['name']}:4222"
    assert NATS_POD_LABELS.items() <= pod_labels(statefulset).items()


def test_jetstream_cannot_be_turned_off() -> None:
    with pytest.raises(chartctl.ChartError, match=r"nats\.config\.jetstream\.enabled must be true"):
        render_with("default", {"nats": {"config": {"jetstream": {"enabled": False}}}})


def test_external_nats_replaces_the_subchart() -> None:
    manifests = render_set("external-nats")
    assert not [m for m in manifests if m["metadata"]["name"].startswith(NATS_NAME)]
    url = named(manifests, "ConfigMap", FULLNAME)["data"]["BRIDGE_NATS_URL"]
    assert url == chartctl.values_set("external-nats")["externalNats"]["url"]
    assert component("nats") not in {p["metadata"]["name"] for p in of_kind(manifests, "NetworkPolicy")}


def test_stream_replicas_cannot_exceed_the_nats_cluster() -> None:
    with pytest.raises(chartctl.ChartError, match=r"streamReplicas \(3\) exceeds the NATS cluster size \(1\)"):
        render_with("default", {"nats": {"config": {"cluster": {"enabled": False}}}})


# --- one Deployment per values.services key --------------------------------------------------------


def test_one_deployment_per_service_key() -> None:
    manifests = render_set("default")
    deployments = {d["metadata"]["name"]: d for d in of_kind(manifests, "Deployment")}
    assert set(deployments) == {component(key) for key in SERVICE_KEYS}
    for key in SERVICE_KEYS:
        container = pod_spec(deployments[component(key)])["containers"][0]
        assert container["args"] == [f"services.{key.replace('-', '_')}"]
        assert pod_labels(deployments[component(key)])["app.kubernetes.io/component"] == key
    services = {s["metadata"]["name"] for s in of_kind(manifests, "Service")}
    assert {component(key) for key in SERVICE_KEYS} <= services


def test_a_disabled_service_has_no_objects() -> None:
    manifests = render_with("default", {"services": {"messenger-sender": {"enabled": False}}})
    names = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"):
        assert (kind, component("messenger-sender")) not in names
        assert (kind, component("kommo-sender")) in names


def test_replicas_or_autoscaler() -> None:
    autoscaled = render_set("default")
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(autoscaled, "HorizontalPodAutoscaler")}
    assert set(hpas) == {component(key) for key in SERVICE_KEYS}
    assert hpas[component("gateway")]["spec"]["minReplicas"] == 3
    assert all("replicas" not in d["spec"] for d in of_kind(autoscaled, "Deployment"))

    fixed = render_set("no-hpa")
    assert of_kind(fixed, "HorizontalPodAutoscaler") == []
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in of_kind(fixed, "Deployment")}
    assert replicas == {
        component("gateway"): 4,
        component("auth"): 2,
        component("router"): 2,
        component("kommo-sender"): 2,
        component("messenger-sender"): 2,
    }


def test_rollouts_keep_every_service_available() -> None:
    manifests = render_set("default")
    for deployment in of_kind(manifests, "Deployment"):
        if deployment["metadata"]["labels"]["app.kubernetes.io/component"] == "emulators":
            continue
        assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    budgets = {p["metadata"]["name"]: p["spec"] for p in of_kind(manifests, "PodDisruptionBudget")}
    for key in SERVICE_KEYS:
        assert budgets[component(key)]["maxUnavailable"] == 1
        assert budgets[component(key)]["selector"]["matchLabels"]["app.kubernetes.io/component"] == key


# --- every container: non-root, read-only, resources ----------------------------------------------


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_every_container_is_non_root_read_only_with_resources(values_set: str) -> None:
    checked = []
    for where, container, spec in containers(render_set(values_set)):
        pod_context, context = spec.get("securityContext", {}), container.get("securityContext", {})
        assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, where
        assert context.get("runAsUser", pod_context.get("runAsUser", 1)) != 0, where
        assert context.get("readOnlyRootFilesystem") is True, where
        assert context.get("allowPrivilegeEscalation") is False, where
        assert context.get("capabilities", {}).get("drop") == ["ALL"], where
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container.get("resources", {}).get(bound, {})), f"{where} {bound}"
        checked.append(where)
    # The check covered the five services, the migrations Job, the test Pod and NATS (when deployed
    # and its subchart fetched; its values are checked without it, above).
    expected = {f"Deployment/{component(key)}/{key}" for key in SERVICE_KEYS}
    expected |= {f"Job/{component('migrations')}/migrations", f"Pod/{component('test')}/smoke"}
    if nats_enabled(values_set) and NATS_SUBCHART_PRESENT:
        expected |= {f"StatefulSet/{NATS_NAME}/nats", f"StatefulSet/{NATS_NAME}/reloader"}
    assert expected <= set(checked), expected - set(checked)


def test_bridge_pods_mount_no_service_account_token() -> None:
    for workload in workloads(render_set("sandbox")):
        if pod_labels(workload).get("app.kubernetes.io/name") == "kommo-bridge":
            assert pod_spec(workload)["automountServiceAccountToken"] is False, workload["metadata"]["name"]
            assert pod_spec(workload)["enableServiceLinks"] is False, workload["metadata"]["name"]


# --- probes and ports -------------------------------------------------------------------------------


def _service_container(manifests: list[Manifest], key: str) -> dict[str, Any]:
    container: dict[str, Any] = pod_spec(named(manifests, "Deployment", component(key)))["containers"][0]
    return container


def test_gateway_has_http_probes() -> None:
    gateway = _service_container(render_set("default"), "gateway")
    assert {p["name"]: p["containerPort"] for p in gateway["ports"]} == {"http": 8080, "metrics": 9464}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    env = env_of(gateway)
    assert (env["BRIDGE_GATEWAY_HOST"], env["BRIDGE_GATEWAY_PORT"]) == ("0.0.0.0", "8080")
    assert gateway["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}


@pytest.mark.parametrize(("key", "port"), [("auth", 50051), ("router", 50052)])
def test_grpc_services_have_native_grpc_probes(key: str, port: int) -> None:
    container = _service_container(render_set("default"), key)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"] == {"port": port}, probe
        assert "httpGet" not in container[probe]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"grpc": port, "metrics": 9464}


@pytest.mark.parametrize("key", ["kommo-sender", "messenger-sender"])
def test_consumers_are_probed_on_the_metrics_port(key: str) -> None:
    container = _service_container(render_set("default"), key)
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert [p["name"] for p in container["ports"]] == ["metrics"]
    assert "lifecycle" not in container


def test_grpc_servers_bind_all_interfaces_and_clients_use_the_service() -> None:
    manifests = render_set("default")
    addresses = {"BRIDGE_AUTH_GRPC_ADDR": ("auth", 50051), "BRIDGE_ROUTER_GRPC_ADDR": ("router", 50052)}
    for key in SERVICE_KEYS:
        env = env_of(_service_container(manifests, key))
        for variable, (server, port) in addresses.items():
            expected = f"0.0.0.0:{port}" if key == server else f"{component(server)}:{port}"
            assert env[variable] == expected, (key, variable)
    for server, port in addresses.values():
        service = named(manifests, "Service", component(server))
        assert {"name": "grpc", "port": port, "targetPort": "grpc"}.items() <= service["spec"]["ports"][0].items()


def test_history_retention_reaches_the_config() -> None:
    config = named(render_set("default"), "ConfigMap", FULLNAME)["data"]
    assert config["BRIDGE_HISTORY_RETENTION_DAYS"] == "30"


def test_metrics_port_and_tracing_settings() -> None:
    default, traced = render_set("default"), render_set("existing-secret")
    assert named(default, "ConfigMap", FULLNAME)["data"]["BRIDGE_METRICS_PORT"] == "9464"
    off = env_of(_service_container(default, "router"))
    assert off["OTEL_SDK_DISABLED"] == "true" and "OTEL_EXPORTER_OTLP_ENDPOINT" not in off
    assert off["OTEL_SERVICE_NAME"] == "kommo-bridge-router"
    on = env_of(_service_container(traced, "router"))
    assert on["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
    assert "OTEL_SDK_DISABLED" not in on


# --- secrets ----------------------------------------------------------------------------------------


def _secret_keys(container: dict[str, Any]) -> dict[str, str]:
    return {
        item["name"]: item["valueFrom"]["secretKeyRef"]["name"]
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }


def test_only_auth_receives_the_master_keys() -> None:
    manifests = render_set("default")
    for key in SERVICE_KEYS:
        received = _secret_keys(_service_container(manifests, key))
        assert {"BRIDGE_DATABASE_URL", "BRIDGE_SERVICE_TOKEN"} <= set(received)
        assert ("BRIDGE_MASTER_KEYS" in received) == (key == "auth"), key
        assert set(received.values()) == {FULLNAME}
    secret = named(manifests, "Secret", FULLNAME)
    assert set(secret["stringData"]) == {
        "BRIDGE_DATABASE_URL",
        "BRIDGE_MASTER_KEYS",
        "BRIDGE_SERVICE_TOKEN",
        "BRIDGE_KOMMO_CLIENT_SECRET",
        "BRIDGE_KOMMO_CHANNEL_SECRET",
    }
    config = named(manifests, "ConfigMap", FULLNAME)["data"]
    assert not [value for value in config.values() if "change-me" in value or "ci-service-token" in value]


def test_existing_secret_is_used_and_no_secret_is_rendered() -> None:
    manifests = render_set("existing-secret")
    assert of_kind(manifests, "Secret") == []
    for key in SERVICE_KEYS:
        assert set(_secret_keys(_service_container(manifests, key)).values()) == {"bridge-secrets"}
    job = named(manifests, "Job", component("migrations"))
    assert _secret_keys(pod_spec(job)["containers"][0]) == {"BRIDGE_DATABASE_URL": "bridge-secrets"}


def test_missing_required_values_are_named() -> None:
    with pytest.raises(chartctl.ChartError, match=r"secrets\.databaseUrl is required"):
        chartctl.render({})


# --- NetworkPolicy ----------------------------------------------------------------------------------


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def _peer_allows(peer: dict[str, Any], source: dict[str, Any]) -> bool:
    if "ipBlock" in peer:
        return True
    namespace_ok = (
        _selects(peer["namespaceSelector"], source["namespace_labels"])
        if "namespaceSelector" in peer
        else source["namespace_labels"].get("kubernetes.io/metadata.name") == NAMESPACE
    )
    pod_ok = _selects(peer["podSelector"], source["labels"]) if "podSelector" in peer else True
    return namespace_ok and pod_ok


def reachable_ports(policies: list[Manifest], target: dict[str, str], source: dict[str, Any]) -> set[str] | None:
    """Ports of a pod (by its labels) `source` may open; None when no policy selects the pod."""
    selecting = [p for p in policies if _selects(p["spec"]["podSelector"], target)]
    if not selecting:
        return None
    ports: set[str] = set()
    for policy in selecting:
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"].get("ingress", []):
            if not rule.get("from") or any(_peer_allows(peer, source) for peer in rule["from"]):
                ports |= {str(port["port"]) for port in rule.get("ports") or [{"port": "any"}]}
    return ports


def _in_namespace(namespace: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"labels": labels or {}, "namespace_labels": {"kubernetes.io/metadata.name": namespace}}


INTERNET = _in_namespace("the-internet")
NEIGHBOUR = _in_namespace(NAMESPACE, {"app": "something-else"})
RELEASE_POD = _in_namespace(NAMESPACE, {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/name": "x"})
PROMETHEUS = _in_namespace("monitoring", {"app.kubernetes.io/name": "prometheus"})


def _pods(values_set: str) -> tuple[list[Manifest], list[Manifest], dict[str, dict[str, str]]]:
    """The objects of a values set, its NetworkPolicies and its pods' labels (NATS's included)."""
    manifests = render_set(values_set)
    return manifests, of_kind(manifests, "NetworkPolicy"), pods_by_name(manifests, nats_enabled(values_set))


@pytest.mark.parametrize("values_set", ["default", "sandbox"])
def test_only_the_gateway_is_reachable_from_outside(values_set: str) -> None:
    _, policies, pods = _pods(values_set)
    assert NATS_NAME in pods and len(pods) >= 8
    for outsider in (INTERNET, NEIGHBOUR):
        open_ports = {name: reachable_ports(policies, labels, outsider) for name, labels in pods.items()}
        assert open_ports.pop(component("gateway")) == {"http"}
        assert all(ports == set() for ports in open_ports.values()), open_ports


def test_release_pods_reach_grpc_nats_and_metrics() -> None:
    _, policies, pods = _pods("sandbox")
    assert reachable_ports(policies, pods[component("auth")], RELEASE_POD) == {"grpc", "metrics"}
    assert reachable_ports(policies, pods[component("router")], RELEASE_POD) == {"grpc", "metrics"}
    assert reachable_ports(policies, pods[component("kommo-sender")], RELEASE_POD) == {"metrics"}
    assert reachable_ports(policies, pods[component("gateway")], RELEASE_POD) == {"http", "metrics"}
    assert reachable_ports(policies, pods[component("emulators")], RELEASE_POD) == {"9001", "9002", "9003"}
    assert reachable_ports(policies, pods[NATS_NAME], RELEASE_POD) == {"any"}
    # The migrations Job and the test Pod accept nothing.
    assert reachable_ports(policies, pods[component("migrations")], RELEASE_POD) == set()
    assert reachable_ports(policies, pods[component("test")], RELEASE_POD) == set()


def test_prometheus_reaches_only_metrics() -> None:
    _, policies, pods = _pods("default")
    for key in SERVICE_KEYS:
        expected = {"http", "metrics"} if key == "gateway" else {"metrics"}
        assert reachable_ports(policies, pods[component(key)], PROMETHEUS) == expected, key
    assert reachable_ports(policies, pods[NATS_NAME], PROMETHEUS) == {"8222", "7777"}


def test_gateway_ingress_can_be_limited_to_the_ingress_controller() -> None:
    manifests, policies, pods = _pods("existing-secret")
    controller = _in_namespace("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
    assert reachable_ports(policies, pods[component("gateway")], INTERNET) == set()
    assert reachable_ports(policies, pods[component("gateway")], controller) == {"http"}
    ingress = named(manifests, "Ingress", FULLNAME)
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": component("gateway"), "port": {"name": "http"}}


# --- hooks ------------------------------------------------------------------------------------------


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook() -> None:
    manifests = render_set("default")
    job = named(manifests, "Job", component("migrations"))
    assert hook_annotation(job) == {"pre-install", "pre-upgrade"}
    container = pod_spec(job)["containers"][0]
    assert container["args"] == ["libs.db.migrate"]
    # Its database URL comes from a hook Secret created before it (the release's Secret does not exist yet).
    hook_secret = named(manifests, "Secret", component("migrations"))
    assert hook_annotation(hook_secret) == {"pre-install", "pre-upgrade"}
    weight = int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < weight
    assert _secret_keys(container) == {"BRIDGE_DATABASE_URL": component("migrations")}
    assert "serviceAccountName" not in pod_spec(job)
    assert pod_spec(job)["restartPolicy"] == "Never"


def test_no_other_object_is_a_hook() -> None:
    hooks = {(m["kind"], m["metadata"]["name"]) for m in render_set("sandbox") if hook_annotation(m)}
    assert hooks == {
        ("Secret", component("migrations")),
        ("Job", component("migrations")),
        ("Pod", component("test")),
    }


def test_helm_test_sends_a_message_through_the_sandbox() -> None:
    manifests = render_set("sandbox")
    pod = named(manifests, "Pod", component("test"))
    assert hook_annotation(pod) == {"test"}
    args = pod_spec(pod)["containers"][0]["args"]
    assert args[0] == "libs.devstack.smoke" and "--sandbox" in args
    emulators = named(manifests, "Service", component("emulators"))
    ports = {p["name"]: p["port"] for p in emulators["spec"]["ports"]}
    assert args[args.index("--kommo-url") + 1] == f"http://{component('emulators')}:{ports['kommo']}"
    assert args[args.index("--telegram-url") + 1] == f"http://{component('emulators')}:{ports['telegram']}"
    # Every URL and address the test checks is a Service port of this release.
    services = of_kind(manifests, "Service")
    service_ports = {(s["metadata"]["name"], p["port"]) for s in services for p in s["spec"]["ports"]}
    checked = 0
    for flag, value in itertools.pairwise(args):
        if flag in {"--http-ready", "--grpc-health"}:
            address = re.fullmatch(r"(?:http://)?([^:/]+):(\d+)(?:/readyz)?", value)
            assert address, value
            assert (address.group(1), int(address.group(2))) in service_ports, value
            checked += 1
    assert checked == 8  # five metrics ports, the gateway's HTTP port, auth's and router's gRPC
    env = env_of(pod_spec(pod)["containers"][0])
    assert env["BRIDGE_AUTH_GRPC_ADDR"] == f"{component('auth')}:50051"
    assert env["BRIDGE_SERVICE_TOKEN"]["secretKeyRef"]["key"] == "BRIDGE_SERVICE_TOKEN"


def test_helm_test_without_sandbox_checks_readiness_only() -> None:
    pod = named(render_set("default"), "Pod", component("test"))
    args = pod_spec(pod)["containers"][0]["args"]
    assert "--sandbox" not in args
    assert args.count("--grpc-health") == 2 and args.count("--http-ready") == 6


def test_sandbox_points_every_platform_url_at_the_emulators() -> None:
    manifests = render_set("sandbox")
    config = named(manifests, "ConfigMap", FULLNAME)["data"]
    emulators = f"http://{component('emulators')}"
    assert config["BRIDGE_KOMMO_AMOJO_URL"] == f"{emulators}:9001"
    assert config["BRIDGE_TELEGRAM_API_URL"] == f"{emulators}:9002"
    assert config["BRIDGE_KOMMO_ACCOUNT_URL"] == f"{emulators}:9003/accounts/{{domain}}"
    assert config["BRIDGE_PUBLIC_URL"] == f"http://{component('gateway')}:80"
    emulator_args = pod_spec(named(manifests, "Deployment", component("emulators")))["containers"][0]["args"]
    assert emulator_args[:3] == ["libs.devstack.emulators", "--host", "0.0.0.0"]
    hook_url = emulator_args[emulator_args.index("--hook-url") + 1]
    assert hook_url == f"http://{component('gateway')}:80/webhooks/kommo/:scope_id"
    assert config["BRIDGE_KOMMO_CHANNEL_ID"] == emulator_args[emulator_args.index("--channel-id") + 1]


# --- monitoring objects -----------------------------------------------------------------------------


def test_service_monitor_scrapes_every_service() -> None:
    manifests = render_set("existing-secret")
    monitor = named(manifests, "ServiceMonitor", FULLNAME)
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]
    allowed = set(selector["matchExpressions"][0]["values"])
    scraped = [
        service
        for service in of_kind(manifests, "Service")
        if _selects(selector, service["metadata"]["labels"])
        and service["metadata"]["labels"]["app.kubernetes.io/component"] in allowed
    ]
    assert {s["metadata"]["name"] for s in scraped} == {component(key) for key in SERVICE_KEYS}
    assert all("metrics" in {p["name"] for p in s["spec"]["ports"]} for s in scraped)
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == "metrics" and endpoint["honorLabels"] is True


def test_alerts_and_dashboard_ship_with_the_chart() -> None:
    manifests = render_set("existing-secret")
    files = chartctl.CHART_DIR / "files"
    rule = named(manifests, "PrometheusRule", FULLNAME)
    assert rule["spec"] == helm.values_from_yaml((files / "prometheus-rules.yaml").read_text())
    dashboard = named(manifests, "ConfigMap", component("dashboard"))
    shipped = json.loads(dashboard["data"]["kommo-bridge.json"])
    assert shipped == json.loads((files / "grafana-dashboard.json").read_text())
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert not {"ServiceMonitor", "PrometheusRule"} & {m["kind"] for m in render_set("default")}


# --- values.schema.json and values.yaml -------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"services": {"gateway": {"replicas": "three"}}}, r"/services/gateway/replicas.*want integer"),
        ({"services": {"payments": {"enabled": True}}}, r"additional properties 'payments' not allowed"),
        ({"servces": {}}, r"additional properties 'servces' not allowed"),
        ({"services": {"auth": {"kind": "soap"}}}, r"/services/auth/kind"),
        ({"containerSecurityContext": {"runAsNonRoot": False}}, r"/containerSecurityContext/runAsNonRoot"),
        ({"containerSecurityContext": {"readOnlyRootFilesystem": False}}, r"readOnlyRootFilesystem"),
        ({"services": {"router": {"resources": {"limits": None}}}}, r"/services/router/resources.*limits"),
        ({"secrets": {"masterKeys": "k1:not-a-32-byte-key"}}, r"/secrets/masterKeys"),
        ({"config": {"publicUrl": "bridge.example.com"}}, r"/config/publicUrl"),
        ({"config": {"streamReplicas": 7}}, r"/config/streamReplicas"),
    ],
)
def test_schema_rejects_bad_values(overrides: dict[str, Any], complaint: str) -> None:
    values = chartctl.merge_values(chartctl.values_set("default"), overrides)
    with pytest.raises(chartctl.ChartError, match=complaint):
        chartctl.render(values)
    assert chartctl.lint(values), "lint must reject it too"


def _schema_at(schema: dict[str, Any], root: dict[str, Any], path: list[str]) -> dict[str, Any] | None:
    """The schema of a values path; None when the schema does not know it."""
    node = schema
    for key in path:
        if "$ref" in node:
            node = root["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        if key in node.get("properties", {}):
            node = node["properties"][key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        elif node.get("type") == "object" and "properties" not in node:
            return node  # a free-form map (annotations, affinity, …): known as a whole
        else:
            return None
    return node


def _paths(values: dict[str, Any], prefix: list[str]) -> list[list[str]]:
    paths = []
    for key, value in values.items():
        paths.append([*prefix, key])
        if isinstance(value, dict):
            paths += _paths(value, [*prefix, key])
    return paths


def test_schema_knows_every_value() -> None:
    schema = json.loads((chartctl.CHART_DIR / "values.schema.json").read_text())
    values = helm.values_from_yaml((chartctl.CHART_DIR / "values.yaml").read_text())
    nats_passthrough = values.pop("nats")
    unknown = [".".join(path) for path in _paths(values, []) if _schema_at(schema, schema, path) is None]
    assert unknown == []
    assert nats_passthrough["enabled"] is True
    assert schema["additionalProperties"] is False
    assert schema["properties"]["services"]["additionalProperties"] is False


def undocumented_keys(text: str) -> list[str]:
    """Keys of a values file with no comment right above them. A key whose comment starts with `# --`
    documents its whole block; a section key is fine when everything in it is documented."""
    lines = text.splitlines()
    problems = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documents its whole block)
    comment = ""  # the first line of the comment block right above, if any
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("#"):
            comment = comment or stripped
            continue
        match = re.match(r"^(\s*)([A-Za-z0-9_./-]+):(.*)$", line)
        if not match:
            comment = ""
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        following = next((n for n in lines[number + 1 :] if n.strip() and not n.strip().startswith("#")), "")
        is_section = not rest and re.match(r"^\s*[A-Za-z0-9_./-]+:", following) is not None
        is_section = is_section and len(following) - len(following.lstrip()) > indent
        covered = any(whole for _, _, whole in stack)
        if not (comment or covered or is_section):
            problems.append(".".join([*(k for _, k, _ in stack), key]))
        stack.append((indent, key, comment.startswith("# --")))
        comment = ""
    return problems


def test_every_value_is_documented() -> None:
    assert undocumented_keys((chartctl.CHART_DIR / "values.yaml").read_text()) == []
    # The check itself notices a bare key.
    assert undocumented_keys("a:\n  # -- fine\n  b: 1\n  c: 2\n") == ["a.c"]
