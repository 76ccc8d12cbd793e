"""What the chart's containers and docs/operations.md run exists and starts: every `python3 -m`
module of every values set, the sandbox emulators with the pod's own arguments, and bridgectl as
`python3 -m libs.cli` (the image has no console scripts)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy import chartctl
from libs.devstack import emulators
from libs.devstack.embedded import free_port
from tests.deploy.chart import SERVICE_KEYS, component, containers, named, pod_spec, render_set
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"


def _modules() -> set[str]:
    """The module every container of the bridge's image runs (its entry point is `python3 -m`; the
    NATS chart's containers run their own images)."""
    modules = set()
    for values_set in chartctl.VALUES_SETS:
        image = chartctl.values_set(values_set).get("image", {}).get("repository", "kommo-bridge")
        for where, container, _ in containers(render_set(values_set)):
            if container["image"].split("@")[0].rsplit(":", 1)[0] == image:
                assert "command" not in container and container["args"], where
                modules.add(container["args"][0])
    return modules


def test_every_module_the_chart_runs_is_runnable() -> None:
    modules = _modules()
    services = {f"services.{key.replace('-', '_')}" for key in SERVICE_KEYS}
    assert modules == services | {"libs.db.migrate", "libs.devstack.emulators", "libs.devstack.smoke"}
    for module in sorted(modules):
        spec = importlib.util.find_spec(module)
        assert spec is not None, module
        if spec.submodule_search_locations is not None:  # a package runs its __main__
            assert importlib.util.find_spec(f"{module}.__main__") is not None, module


def _emulator_args() -> list[str]:
    deployment = named(render_set("sandbox"), "Deployment", component("emulators"))
    args: list[str] = pod_spec(deployment)["containers"][0]["args"]
    assert args[0] == "libs.devstack.emulators"
    return args[1:]


def test_emulators_accept_the_pods_arguments() -> None:
    args = emulators.build_parser().parse_args(_emulator_args())
    assert args.host == "0.0.0.0"
    assert emulators.build_parser().parse_args(_emulator_args()[2:]).host == "127.0.0.1"  # the default


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, int]]:
    """The emulators started with the pod's arguments, except ports (free ones), secret files (here)
    and the address: 127.0.0.2 instead of 0.0.0.0, which proves --host is used without listening on
    every interface of this machine."""
    args, ports = _emulator_args(), {}
    for flag in ("--kommo-port", "--telegram-port", "--accounts-port"):
        ports[flag] = free_port()
        args[args.index(flag) + 1] = str(ports[flag])
    for flag in ("--channel-secret-file", "--client-secret-file"):
        secret = tmp_path / flag.strip("-")
        secret.write_text("sandbox-secret\n")
        args[args.index(flag) + 1] = str(secret)
    host = "127.0.0.2"
    args[args.index("--host") + 1] = host
    process = subprocess.Popen(
        [sys.executable, "-m", "libs.devstack.emulators", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process, host, ports["--telegram-port"]
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_emulators_start_with_the_pods_arguments_on_the_given_host(
    emulator_process: tuple[subprocess.Popen[str], str, int],
) -> None:
    process, host, port = emulator_process
    answers: list[httpx.Response] = []

    async def answered() -> bool:
        assert process.poll() is None, process.stderr.read() if process.stderr else "exited"
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                answers.append(await http.get(f"http://{host}:{port}/bot123:abc/getMe"))
        except httpx.TransportError:
            return False
        return True

    await wait_for(answered, timeout=20, what="the emulators to answer")
    assert answers[-1].status_code < 500
    with pytest.raises(httpx.TransportError):  # bound to the given address only, not to loopback's
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_bridgectl_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "libs.cli", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: bridgectl")
    assert "python3 -m libs.cli accounts list" in OPERATIONS.read_text()
