"""The `helm test` script (libs/devstack/smoke.py) fails loudly, naming the step, when something is not
ready. Its full sandbox round trip needs the whole stack: see docs/operations.md, "Checking an install"."""

from __future__ import annotations

import pytest

from libs.devstack.embedded import free_port
from libs.devstack.smoke import main


def test_fails_naming_the_endpoint_that_is_not_ready() -> None:
    url = f"http://127.0.0.1:{free_port()}/readyz"
    with pytest.raises(SystemExit) as failure:
        main(["--http-ready", url, "--timeout", "1"])
    assert str(failure.value).startswith(f"FAIL SmokeFailure: timed out waiting for {url} to answer 200")
    assert "(last error: ConnectError" in str(failure.value)


def test_fails_naming_the_grpc_server_that_is_not_serving() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(SystemExit) as failure:
        main(["--grpc-health", address, "--timeout", "1"])
    assert f"timed out waiting for gRPC health of {address} to be SERVING" in str(failure.value)


def test_sandbox_mode_needs_the_emulator_urls() -> None:
    with pytest.raises(SystemExit, match="--sandbox needs --kommo-url and --telegram-url"):
        main(["--sandbox", "--timeout", "1"])
