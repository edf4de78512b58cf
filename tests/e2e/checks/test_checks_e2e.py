"""inv roundtrip and inv verify against the running stack (host service + gateway container)."""
import json

import pytest

from tests.support import inv


@pytest.fixture(scope="module")
def stack_up(stack_env):
    started = inv("start", "--services=nats,model-gateway", env=stack_env, timeout=900)
    assert started.returncode == 0, started.stderr[-2000:]
    return stack_env


def test_roundtrip_goes_through_the_gateway_container(stack_up):
    done = inv("roundtrip", env=stack_up, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[ok  ] gateway: container -> host vectors equal the host's" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "roundtrip PASSED: 7 passed, 0 failed, 0 skipped"


def test_verify_sees_the_stack_ports_as_ours(stack_up):
    document = json.loads(inv("verify", "--json", env=stack_up, timeout=300).stdout)
    by_name = {c["name"]: c for c in document["checks"]}
    for name, var in (("nats", "CORTEX_NATS_PORT"), ("modelGateway", "CORTEX_MODEL_GATEWAY_PORT"),
                      ("mlx", "MLX_PORT")):
        check = by_name[f"port {name} ({stack_up[var]})"]
        assert check["status"] == "pass" and "our stack" in check["detail"], check
    assert by_name["container engine"]["status"] == "pass"
