"""The result document of inv bench: per-engine throughput, the ratios, the targets they are
held to, and where the document is saved (pure, but for save_result)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from tasks.bench.stats import median, rate, ratio
from tasks.bench.workloads import CHUNK, CLIENTS, Workload

SCHEMA = "cortex-bench/1"
RESULTS_DIR = "bench-results"

# (key, label, comparison, threshold): the targets for a 2-core machine.
TARGETS = (
    ("service_efficiency", "service efficiency (HTTP / in-process)", ">=", 0.9),
    ("batching_gain", f"batching gain ({CLIENTS} one-text clients)", ">=", 3.0),
    ("vs_peer", "service / sentence-transformers throughput", ">=", 1.0),
    ("cold_start_s", "cold start, launch to healthy (s)", "<=", 3.0),
    ("vs_peer_corpus", "whole corpus in one call vs peer", ">=", 1.0),
    ("vs_peer_short", "short single-length batches vs peer", ">=", 1.0),
    ("vs_peer_medium", "medium single-length batches vs peer", ">=", 1.0),
    ("vs_peer_long", "long single-length batches vs peer", ">=", 1.0),
    ("vs_peer_chunks", f"chunks of {CHUNK} in corpus order vs peer", ">=", 2.0),
    ("vs_peer_one_text", f"{CLIENTS} one-text clients vs peer one by one", ">=", 1.5),
)


def shape_ratios(shapes: Mapping, one_text: Mapping) -> dict[str, float | None]:
    """service / peer per shape, keyed as TARGETS names them."""
    by_name = {row["name"]: row for row in shapes.get("workloads", [])}
    out = {f"vs_peer_{name}": by_name.get(name, {}).get("vs_peer")
           for name in ("corpus", "short", "medium", "long", "chunks")}
    out["vs_peer_one_text"] = one_text.get("vs_peer")
    return out


def summarize_throughput(workloads: Sequence[Workload],
                         seconds: Mapping[str, Mapping[str, list[float]]]) -> dict:
    """seconds[engine][workload] = one duration per repeat -> per-workload and overall texts/s.

    An engine's overall figure is all texts over the sum of its per-workload median times, so
    each workload weighs by its work, not by its count.
    """
    engines = list(seconds)
    rows = []
    for w in workloads:
        row = {"name": w.name, "texts": w.size, "batch_size": w.batch_size}
        for engine in engines:
            row[engine] = rate(w.size, median(seconds[engine].get(w.name, [])))
        rows.append(row)
    total_texts = sum(w.size for w in workloads)
    overall = {"name": "all", "texts": total_texts, "batch_size": None}
    for engine in engines:
        medians = [median(seconds[engine].get(w.name, [])) for w in workloads]
        overall[engine] = None if any(m is None for m in medians) else rate(total_texts,
                                                                            sum(medians))
    for row in (*rows, overall):
        row["efficiency"] = ratio(row.get("http"), row.get("inprocess"))
        row["vs_peer"] = ratio(row.get("http"), row.get("peer"))
    return {"workloads": rows, "overall": overall}


def evaluate_targets(ratios: Mapping[str, float | None]) -> list[dict]:
    out = []
    for key, label, op, threshold in TARGETS:
        value = ratios.get(key)
        met = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
        out.append({"key": key, "label": label, "target": f"{op} {threshold:g}",
                    "value": value, "met": met})
    return out


def build_document(*, started: str, quick: bool, repeats: int, machine: dict, corpus: dict,
                   service: dict, throughput: dict, batching: dict, latency: dict,
                   cold_start: dict, peer: dict, elapsed_s: float, shapes: dict | None = None,
                   one_text: dict | None = None) -> dict:
    overall = throughput["overall"]
    ratios = {
        "service_efficiency": overall.get("efficiency"),
        "batching_gain": batching.get("gain"),
        "vs_peer": overall.get("vs_peer"),
        "inprocess_vs_peer": ratio(overall.get("inprocess"), overall.get("peer")),
        "cold_start_s": cold_start.get("median_s"),
        **shape_ratios(shapes or {}, one_text or {}),
    }
    return {
        "schema": SCHEMA,
        "started": started,
        "quick": quick,
        "repeats": repeats,
        "elapsed_s": round(elapsed_s, 1),
        "machine": machine,
        "corpus": corpus,
        "service": service,
        "peer": peer,
        "throughput": throughput,
        "batching": batching,
        "latency": latency,
        "cold_start": cold_start,
        "shapes": shapes or {},
        "one_text": one_text or {},
        "ratios": ratios,
        "targets": evaluate_targets(ratios),
    }


def save_result(root: Path, doc: dict) -> Path:
    """bench-results/bench-<UTC time>.json (git-ignored), and latest.json beside it."""
    folder = Path(root) / RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = "bench-" + doc["started"].replace(":", "").replace("-", "") + ".json"
    path = folder / name
    text = json.dumps(doc, indent=2)
    path.write_text(text + "\n")
    (folder / "latest.json").write_text(text + "\n")
    return path


def missed_targets(doc: Mapping) -> list[dict]:
    """The targets the run measured and did not meet (a target not measured is not missed)."""
    return [t for t in doc.get("targets", []) if t.get("met") is False]
