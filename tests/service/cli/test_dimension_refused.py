"""Issue 28, row 9 with the bundled model: a dimension larger than its 384 is refused before a
launch. The bundled model's folder lives in the service venv (its package), which this
session provides; folders given as EMBEDDINGS_MODEL are the unit session's cases."""
from __future__ import annotations

import pytest

from tests.support import inv, isolated_env
from tests.unit.cli.test_careless_user import nothing_started, one_line_refusal


@pytest.mark.parametrize("env_over, args, words", [
    ({"EMBEDDINGS_DIM": "1000"}, [], ["EMBEDDINGS_DIM=1000", "384 dimensions"]),
    ({}, ["--mlx-flag=--dim=1000"], ["--dim=1000", "384 dimensions"]),
])
def test_a_dimension_above_the_bundled_models_is_refused_before_a_launch(tmp_path, env_over,
                                                                        args, words):
    env = isolated_env(tmp_path, **env_over)
    done = inv("start", "--no-install", "--services=nats", *args, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    one_line_refusal(done, *words)
    nothing_started(env)
