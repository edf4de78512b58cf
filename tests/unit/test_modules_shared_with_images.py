"""The host service's modules that the gateway and registry images copy in
(compose/pyserve/Dockerfile): each must stand alone there, beside the images' own files."""
from __future__ import annotations

import ast
import re

import pytest

from tests.support import REPO_ROOT

DOCKERFILE = REPO_ROOT / "compose" / "pyserve" / "Dockerfile"


def shared_modules() -> list[str]:
    copied = re.findall(r"mlx_service/([\w/]+\.py)", DOCKERFILE.read_text())
    assert copied, "the pyserve Dockerfile copies none of the host service's modules"
    return copied


@pytest.mark.parametrize("name", shared_modules())
def test_a_shared_module_imports_nothing_of_the_service(name):
    tree = ast.parse((REPO_ROOT / "mlx_service" / name).read_text())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names]
    imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert imported and not [m for m in imported if m.split(".")[0] == "mlx_service"], imported


@pytest.mark.parametrize("name", shared_modules())
def test_a_shared_module_reaches_the_build(name):
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert f"!mlx_service/{name}" in ignore, f".dockerignore keeps mlx_service/{name} out of the build"
