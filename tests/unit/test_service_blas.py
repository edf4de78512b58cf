"""The OpenBLAS re-exec decision (pure) and the detection of what is mapped in."""
from __future__ import annotations

import pytest

from mlx_service.blas import OPENBLAS_CANDIDATES, REEXEC_MARKER, BlasError, blas_in_use, preload_plan

LIB = OPENBLAS_CANDIDATES[0]


def present(path):
    return path == LIB


def absent(path):
    return False


def test_auto_preloads_openblas_on_linux_when_installed():
    assert preload_plan("auto", "linux", {}, present) == LIB
    assert preload_plan("auto", "linux", {"LD_PRELOAD": "/x/libfoo.so"}, present) == f"{LIB}:/x/libfoo.so"


def test_no_reexec_when_not_needed():
    assert preload_plan("auto", "linux", {}, absent) is None            # not installed
    assert preload_plan("auto", "darwin", {}, present) is None          # Accelerate there
    assert preload_plan("auto", "linux", {"LD_PRELOAD": LIB}, present) is None  # already in
    assert preload_plan("auto", "linux", {REEXEC_MARKER: "1"}, present) is None  # no loop
    assert preload_plan("reference", "linux", {}, present) is None


def test_reference_drops_an_inherited_openblas_preload():
    assert preload_plan("reference", "linux", {"LD_PRELOAD": LIB}, present) == ""
    assert preload_plan("reference", "linux", {"LD_PRELOAD": f"{LIB}:/x/libfoo.so"}, present) == "/x/libfoo.so"


def test_forced_openblas_missing_is_an_error():
    with pytest.raises(BlasError, match="libopenblas0-pthread"):
        preload_plan("openblas", "linux", {}, absent)
    assert preload_plan("openblas", "linux", {"MLX_OPENBLAS_PATH": "/opt/libopenblas.so"},
                        lambda p: p == "/opt/libopenblas.so") == "/opt/libopenblas.so"


def test_blas_in_use_reads_the_mapped_libraries(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(f"7f00-7f01 r-xp 0 08:01 1 {LIB}\n7f02-7f03 r-xp 0 08:01 2 /lib/libc.so.6\n")
    assert blas_in_use(str(maps), "linux") == "openblas"
    maps.write_text("7f02-7f03 r-xp 0 08:01 2 /x/libmlx.so\n")
    assert blas_in_use(str(maps), "linux") == "reference"
    assert blas_in_use(str(maps), "darwin") == "accelerate"
