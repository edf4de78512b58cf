"""mlx_service's settings: flags over env over defaults, and clear refusals."""
from __future__ import annotations

import pytest

from mlx_service.config import Config, ConfigError, load_config, parse_hosts


def test_defaults():
    c = load_config([], {})
    assert c.hosts == ("127.0.0.1",) and c.port == 8081
    assert c.model is None and c.dim is None and c.blas == "auto"
    assert c.max_batch_items > 0 and c.max_request_bytes > 0 and c.queue_size > 0


def test_env_then_flags():
    env = {"MLX_HOST": "0.0.0.0", "MLX_PORT": "9000", "EMBEDDINGS_MODEL": "/m",
           "EMBEDDINGS_DIM": "128", "MLX_BLAS": "reference", "MLX_QUEUE_SIZE": "3",
           "MLX_MAX_BATCH_ITEMS": "7", "MLX_MAX_REQUEST_BYTES": "2048", "MLX_MAX_BATCH_TOKENS": "512"}
    c = load_config([], env)
    assert (c.hosts, c.port, c.model, c.dim, c.blas) == (("0.0.0.0",), 9000, "/m", 128, "reference")
    assert (c.queue_size, c.max_batch_items, c.max_request_bytes, c.max_batch_tokens) == (3, 7, 2048, 512)
    c = load_config(["--host", "127.0.0.1", "--port", "9001", "--model", "x/y", "--dim", "64",
                     "--blas", "openblas"], env)
    assert (c.hosts, c.port, c.model, c.dim, c.blas) == (("127.0.0.1",), 9001, "x/y", 64, "openblas")


def test_seed_port_name_and_precedence():
    assert load_config([], {"CORTEX_MLX_PORT": "8123"}).port == 8123
    assert load_config([], {"CORTEX_MLX_PORT": "8123", "MLX_PORT": "8124"}).port == 8124
    assert load_config([], {"MLX_PORT": ""}).port == 8081  # empty = unset


def test_several_hosts():
    assert parse_hosts("127.0.0.1, 172.17.0.1,127.0.0.1") == ("127.0.0.1", "172.17.0.1")
    c = Config(hosts=("127.0.0.1", "::1"), port=8081)
    assert c.listen() == "127.0.0.1:8081 [::1]:8081"


@pytest.mark.parametrize("env,words", [
    ({"MLX_PORT": "abc"}, ["MLX_PORT", "integer"]),
    ({"MLX_PORT": "70000"}, ["MLX_PORT", "range"]),
    ({"EMBEDDINGS_DIM": "0"}, ["EMBEDDINGS_DIM"]),
    ({"MLX_BLAS": "atlas"}, ["MLX_BLAS"]),
    ({"MLX_HOST": " , "}, ["MLX_HOST"]),
    ({"MLX_MAX_REQUEST_BYTES": "10"}, ["MLX_MAX_REQUEST_BYTES"]),
])
def test_refusals_name_the_setting(env, words):
    with pytest.raises(ConfigError) as err:
        load_config([], env)
    assert all(w in str(err.value) for w in words)


def test_bad_flag_value_names_the_flag():
    with pytest.raises(ConfigError, match="--dim"):
        load_config(["--dim", "x"], {})
    with pytest.raises(SystemExit):
        load_config(["--blas", "atlas"], {})


def test_one_default_for_http_threads_built_directly_or_loaded():
    # The README's 72 (concurrency 64 + 8 probe threads) whichever way a Config is made.
    assert Config().http_threads == load_config([], {}).http_threads == 72
    assert Config(max_concurrent_requests=100).http_threads == 108
    assert load_config([], {"MLX_MAX_CONCURRENT_REQUESTS": "100"}).http_threads == 108


def test_a_config_built_directly_keeps_the_concurrency_plus_8_rule():
    with pytest.raises(ConfigError, match="MLX_HTTP_THREADS=50"):
        Config(max_concurrent_requests=100, http_threads=50)
    with pytest.raises(ConfigError, match="MLX_HTTP_THREADS=50"):
        load_config([], {"MLX_MAX_CONCURRENT_REQUESTS": "100", "MLX_HTTP_THREADS": "50"})


def test_every_bad_setting_is_named_at_once_not_only_the_first():
    env = {"MLX_BLAS": "x", "MLX_MAX_BATCH_ITEMS": "0", "MLX_PRECISION": "y",
           "MLX_LOG_LEVEL": "LOUD", "MLX_CPU_FAST": "maybe", "MLX_PORT": "99999",
           "MLX_NATIVE_KERNELS": "perhaps"}
    with pytest.raises(ConfigError) as refused:
        load_config([], env)
    message = str(refused.value)
    for name in env:
        assert f"{name}=" in message, message
    assert "\n" not in message


def test_the_model_settings_have_one_way_in():
    """Issue 26, item 3: --check-model and --check-rerank-model read the models as the
    service does (config.model_settings); an empty value is unset, as in load_config."""
    from mlx_service.config import model_settings
    assert model_settings({}) == (None, None)
    assert model_settings({"EMBEDDINGS_MODEL": "", "RERANK_MODEL": "/r"}) == (None, "/r")
    env = {"EMBEDDINGS_MODEL": "/e", "RERANK_MODEL": "/r"}
    c = load_config([], env)
    assert model_settings(env) == (c.model, c.rerank_model) == ("/e", "/r")


def test_the_blas_choice_takes_precision_from_config_not_the_environment(monkeypatch):
    """blas.choose weighs oneMKL for bf16 only by the precision it is given (Config's
    MLX_PRECISION): an environment variable alone changes nothing."""
    import inspect
    import re

    from mlx_service.kernels import blas
    assert "precision" in inspect.signature(blas.choose).parameters
    assert "precision" in inspect.signature(blas.maybe_reexec).parameters
    assert not re.search(r"[\"']MLX_PRECISION[\"']", inspect.getsource(blas))
