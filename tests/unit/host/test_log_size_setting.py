"""MLX_LOG_MAX_BYTES is read by one parser, the service's, for the tasks that rotate the log
before a start and for the service that rotates it while it runs (issue 20)."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlx_service.config import ConfigError, load_config
from tasks.core.settings import Settings, SettingsError
from tasks.host.launch import log_max_bytes


def settings(**env) -> Settings:
    return Settings(root=Path("."), env=env)


@pytest.mark.parametrize("raw", ["0", "-5", "ten", "1e6"])
def test_a_value_the_service_refuses_is_refused_by_the_tasks_in_the_same_words(raw):
    with pytest.raises(ConfigError) as service:
        load_config([], {"MLX_LOG_MAX_BYTES": raw})
    with pytest.raises(SettingsError) as tasks:
        log_max_bytes(settings(MLX_LOG_MAX_BYTES=raw))
    assert str(tasks.value) == str(service.value)


@pytest.mark.parametrize("raw,expected", [(None, 10 * 1024 * 1024), ("", 10 * 1024 * 1024),
                                          (" 2000 ", 2000)])
def test_the_same_value_on_both_sides(raw, expected):
    env = {} if raw is None else {"MLX_LOG_MAX_BYTES": raw}
    assert log_max_bytes(settings(**env)) == load_config([], env).log_max_bytes == expected
