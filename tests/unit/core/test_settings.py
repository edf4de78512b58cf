"""Settings: the one URL builder, and which of MLX_PORT / CORTEX_MLX_PORT names the port."""
from __future__ import annotations

import json

import pytest

from tasks.core.settings import Settings, http_url, load_settings
from tests.support import inv, isolated_env, free_port


# --- one URL builder -------------------------------------------------------------------------

@pytest.mark.parametrize("host, url", [
    ("127.0.0.1", "http://127.0.0.1:8081"),
    ("::1", "http://[::1]:8081"),
    ("[::1]", "http://[::1]:8081"),
    ("fe80::1%eth0", "http://[fe80::1%25eth0]:8081"),
    ("localhost", "http://localhost:8081"),
])
def test_http_url_brackets_ipv6_literals(host, url):
    assert http_url(host, 8081) == url
    assert http_url(host, 8081, "/health") == url + "/health"


@pytest.mark.parametrize("mlx_host, url", [
    ("::1", "http://[::1]:8081"),
    ("::", "http://[::1]:8081"),            # a wildcard is called on loopback of its family
    ("0.0.0.0", "http://127.0.0.1:8081"),
    ("::1,127.0.0.1", "http://[::1]:8081"),  # several addresses: the first is the one to call
    ("127.0.0.1", "http://127.0.0.1:8081"),
])
def test_mlx_url_for_every_kind_of_host(tmp_path, mlx_host, url):
    settings = Settings(tmp_path, {"MLX_HOST": mlx_host, "MLX_PORT": "8081"})
    assert settings.mlx_url == url


def test_containers_reach_the_host_service_on_its_port(tmp_path):
    settings = Settings(tmp_path, {"MLX_PORT": "9123"})
    assert settings.mlx_host_url == "http://host.docker.internal:9123"


# --- MLX_PORT and the seed's CORTEX_MLX_PORT ---------------------------------------------------

def _env_file(tmp_path, text: str):
    (tmp_path / ".env.dev").write_text(text)
    return tmp_path


def test_cortex_mlx_port_in_the_environment_beats_env_dev(tmp_path):
    root = _env_file(tmp_path, "MLX_PORT=8081\n")
    assert load_settings(root, {"CORTEX_MLX_PORT": "9191"}).mlx_port == 9191


def test_mlx_port_in_the_environment_beats_cortex_mlx_port_there(tmp_path):
    root = _env_file(tmp_path, "MLX_PORT=8081\n")
    settings = load_settings(root, {"CORTEX_MLX_PORT": "9191", "MLX_PORT": "9292"})
    assert settings.mlx_port == 9292


def test_env_dev_alone_follows_the_same_rule(tmp_path):
    assert load_settings(_env_file(tmp_path, "CORTEX_MLX_PORT=9393\n"), {}).mlx_port == 9393
    both = _env_file(tmp_path, "CORTEX_MLX_PORT=9393\nMLX_PORT=9494\n")
    assert load_settings(both, {}).mlx_port == 9494
    assert load_settings(_env_file(tmp_path, "# nothing\n"), {}).mlx_port == 8081


def test_the_chosen_port_is_what_compose_reads_as_mlx_port(tmp_path):
    from tasks.stack.project import compose_env
    settings = load_settings(_env_file(tmp_path, "MLX_PORT=8081\n"), {"CORTEX_MLX_PORT": "9191"})
    env = compose_env(settings)
    assert env["MLX_PORT"] == "9191"
    assert env["MLX_HOST_URL"] == "http://host.docker.internal:9191"


def test_a_bad_cortex_mlx_port_is_named(tmp_path):
    from tasks.core.settings import SettingsError
    settings = load_settings(_env_file(tmp_path, ""), {"CORTEX_MLX_PORT": "eighty"})
    with pytest.raises(SettingsError, match="CORTEX_MLX_PORT='eighty'"):
        settings.mlx_port


def test_inv_reports_the_port_from_cortex_mlx_port(tmp_path):
    port = free_port()
    env = isolated_env(tmp_path, CORTEX_MLX_PORT=str(port))
    del env["MLX_PORT"]
    done = inv("mlx", "status", "--json", env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["port"] == port and doc["url"].endswith(f":{port}")


def test_env_file_can_live_elsewhere(tmp_path):
    other = tmp_path / "elsewhere.env"
    other.write_text("CORTEX_NATS_PORT=5999\n")
    settings = load_settings(tmp_path, {"CORTEX_ENV_FILE": str(other)})
    assert settings.env_file == other and settings.port("CORTEX_NATS_PORT") == 5999


# --- MLX_STOP_GRACE: one shutdown setting for the service and the lifecycle ----------------------

def test_stop_grace_defaults_to_the_services_own_default(tmp_path):
    from mlx_service.config import LIMITS
    assert load_settings(_env_file(tmp_path, ""), {}).mlx_stop_grace == LIMITS["stop_grace"][1]


def test_stop_grace_from_env_dev_and_the_environment_beats_it(tmp_path):
    root = _env_file(tmp_path, "MLX_STOP_GRACE=4\n")
    assert load_settings(root, {}).mlx_stop_grace == 4
    assert load_settings(root, {"MLX_STOP_GRACE": "7"}).mlx_stop_grace == 7


@pytest.mark.parametrize("raw, problem", [("soon", "not a whole number"), ("2.5", "not a whole"),
                                          ("1", "below 2 seconds")])
def test_a_stop_grace_the_service_would_refuse_is_named(tmp_path, raw, problem):
    from tasks.core.settings import SettingsError
    with pytest.raises(SettingsError, match=f"MLX_STOP_GRACE=.*{problem}"):
        load_settings(_env_file(tmp_path, ""), {"MLX_STOP_GRACE": raw}).mlx_stop_grace


def test_stop_and_attached_modes_take_their_grace_from_the_setting():
    import inspect as signature_of

    from tasks.host import mlx_attached
    from tasks.host import mlx_process
    for function in (mlx_process.stop_service, mlx_process.restart_service,
                     mlx_attached.run_attached):
        assert signature_of.signature(function).parameters["grace"].default is None, function


# --- MLX_API_KEY: what the tooling sends to the host service ------------------------------------

def test_api_key_from_env_dev_or_the_environment_becomes_a_bearer_header(tmp_path):
    root = _env_file(tmp_path, "MLX_API_KEY=from-file\n")
    assert load_settings(root, {}).mlx_auth_headers() == {"Authorization": "Bearer from-file"}
    assert load_settings(root, {"MLX_API_KEY": "from-env"}).mlx_auth_headers() == {
        "Authorization": "Bearer from-env"}
    assert load_settings(_env_file(tmp_path, ""), {}).mlx_auth_headers() == {}
    assert load_settings(_env_file(tmp_path, ""), {"MLX_API_KEY": ""}).mlx_auth_headers() == {}


def test_a_key_no_header_can_carry_is_named_but_never_shown(tmp_path):
    from tasks.core.settings import SettingsError
    settings = load_settings(_env_file(tmp_path, ""), {"MLX_API_KEY": "s3cret\nvalue"})
    with pytest.raises(SettingsError, match="MLX_API_KEY") as raised:
        settings.mlx_auth_headers()
    assert "s3cret" not in str(raised.value)
