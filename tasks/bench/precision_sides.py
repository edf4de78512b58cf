"""fp32 and bf16 side by side in one `inv bench` run, on a CPU with bf16 units (issue 27).

The service `auto` runs is one of the two paths; which one depends on what its probes
measured. So on a CPU with bf16 units and a bf16 GEMM (the service's own on AVX512_BF16, or
oneMKL in the service venv), two more services are started, one per path:
`MLX_PRECISION=fp32` (MLX_BLAS=auto: the fastest float32 library) and `MLX_PRECISION=bf16`. Their HTTP passes join the same interleaved repeats as
the others (every workload and shape, beside the peer), and each gets the 16 one-text
clients. Elsewhere nothing more is started and the document says why.
"""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterable, Mapping

from tasks.bench.client import EmbedClient, http_pass
from tasks.bench.engines import BenchService
from tasks.bench.stats import fmt, ratio
from tasks.core.say import Say

# (name, the service settings of that path); bf16 on oneMKL where it is the only bf16 GEMM
FP32_SIDE = ("fp32", {"MLX_PRECISION": "fp32"})
BF16_SIDE = ("bf16", {"MLX_PRECISION": "bf16"})
ONEMKL_BF16_SIDE = ("bf16", {"MLX_PRECISION": "bf16", "MLX_BLAS": "mkl"})
ENGINE_PREFIX = "http-"


def wanted_sides(units: Iterable[str], mkl: str | None, native: bool = False
                 ) -> tuple[tuple, str]:
    """(the sides to run, why): both where the CPU has bf16 units and a bf16 GEMM: the
    service's own (native: the CPU has AVX512_BF16, native_bf16.compile_flags) or oneMKL.
    With the native one, the bf16 side runs MLX_BLAS=auto and picks its GEMM by measurement
    as a user's service does; with oneMKL alone, on oneMKL."""
    units = tuple(units)
    if not units:
        return (), "this CPU has no bf16 units (AMX-BF16, AVX512_BF16): fp32 is its only path"
    if native:
        extra = ", oneMKL installed" if mkl else ""
        return (FP32_SIDE, BF16_SIDE), f"this CPU has {'/'.join(units)}, the native bf16 GEMM{extra}"
    if not mkl:
        return (), (f"this CPU has {'/'.join(units)} but the service venv has no oneMKL "
                    "(`inv mlx install --blas mkl`)")
    return (FP32_SIDE, ONEMKL_BF16_SIDE), f"this CPU has {'/'.join(units)}, oneMKL installed"


def start_sides(sides, python: Path, root: Path, logs: Path, env: Mapping[str, str],
                headers: Mapping[str, str], stack: ExitStack, say: Say) -> dict:
    """{name: (service, client, its /info)}, each stopped when `stack` closes."""
    started = {}
    for name, settings in sides:
        svc = BenchService(python, root, logs / f"service-{name}.log", env={**env, **settings},
                           label=f"service ({name})", headers=headers)
        stack.callback(svc.stop)
        say(f"starting the {name} service {svc.url} ({settings})")
        svc.start()
        client = EmbedClient(svc.url)
        stack.callback(client.close)
        started[name] = (svc, client, svc.get_json("/info"))
    return started


def side_engines(started: Mapping) -> dict[str, Callable]:
    """One engine per side for run.interleaved: a workload in, its HTTP pass's seconds out."""
    return {ENGINE_PREFIX + name: (lambda w, c=client: http_pass(c, w.texts, w.batch_size))
            for name, (_, client, _) in started.items()}


def describe(reason: str, cpu: str, started: Mapping, shapes: Mapping,
             one_text: Mapping[str, Mapping], peer_one_text: float | None) -> dict:
    """Per shape: texts/s of each side and the peer, bf16 / fp32 and each side / peer."""
    doc: dict = {"cpu": cpu, "reason": reason, "measured": bool(started)}
    if not started:
        return doc
    doc["paths"] = {name: {"precision": info.get("precision"), "blas": info.get("blas"),
                           "precision_reason": info.get("precision_reason")}
                    for name, (_, _, info) in started.items()}
    rows = []
    for row in shapes.get("workloads", []):
        rows.append(_row(row["name"], row.get(ENGINE_PREFIX + "fp32"),
                         row.get(ENGINE_PREFIX + "bf16"), row.get("peer")))
    rows.append(_row("one_text", (one_text.get("fp32") or {}).get("http_tps"),
                     (one_text.get("bf16") or {}).get("http_tps"), peer_one_text))
    doc["shapes"] = rows
    return doc


def _row(name: str, fp32: float | None, bf16: float | None, peer: float | None) -> dict:
    return {"name": name, "fp32": fp32, "bf16": bf16, "peer": peer,
            "bf16_vs_fp32": ratio(bf16, fp32), "fp32_vs_peer": ratio(fp32, peer),
            "bf16_vs_peer": ratio(bf16, peer)}


def format_sides(doc: Mapping | None) -> list[str]:
    """The side-by-side table for the report (empty when the run had none to show)."""
    if not doc:
        return []
    lines = ["", f"fp32 and bf16 side by side on {doc.get('cpu')}: {doc.get('reason')}"]
    if not doc.get("measured"):
        return lines
    for name, path in doc["paths"].items():
        lines.append(f"  {name}: runs {path.get('precision')} on {path.get('blas')} "
                     f"({path.get('precision_reason')})")
    head = (f"{'shape, texts/s (HTTP)':<24}{'fp32':>8}{'bf16':>8}{'bf16/fp32':>11}"
            f"{'peer (ST)':>11}{'fp32/peer':>11}{'bf16/peer':>11}")
    lines += [head, "-" * len(head)]
    for row in doc["shapes"]:
        name = "16 one-text clients" if row["name"] == "one_text" else row["name"]
        lines.append(f"{name:<24}{fmt(row['fp32']):>8}{fmt(row['bf16']):>8}"
                     f"{fmt(row['bf16_vs_fp32'], '.2f', 'x'):>11}{fmt(row['peer']):>11}"
                     f"{fmt(row['fp32_vs_peer'], '.2f', 'x'):>11}"
                     f"{fmt(row['bf16_vs_peer'], '.2f', 'x'):>11}")
    return lines
