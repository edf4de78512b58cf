"""The result document of `inv bench --rerank`: pairs/s per side and shape, the ratios, the
target they are held to, and where the document is saved (pure, but for save_rerank_result)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from tasks.bench.document import RESULTS_DIR
from tasks.bench.stats import median, rate, ratio

SCHEMA = "cortex-bench-rerank/1"
TARGET = 1.5  # service / CrossEncoder.predict, pairs/s (issue 24, item 7)
# The engines of one shape: one client, the concurrent clients, the peer.
SERVICE, SERVICE_CONCURRENT, PEER = "service", "service_concurrent", "peer"


def summarize_shape(seconds: Mapping[str, Sequence[float]], pairs: int, clients: int) -> dict:
    """seconds[engine] = one duration per repeat -> pairs/s (medians) and the ratios.

    The peer has no server: its concurrent clients would be served one after another, so its
    rate with `clients` clients is its one-request rate."""
    peer_pps = rate(pairs, median(seconds.get(PEER, [])))
    service_pps = rate(pairs, median(seconds.get(SERVICE, [])))
    concurrent_pps = rate(pairs * clients, median(seconds.get(SERVICE_CONCURRENT, [])))
    return {"service_pps": service_pps, "service_concurrent_pps": concurrent_pps,
            "peer_pps": peer_pps, "peer_concurrent_pps": peer_pps,
            "vs_peer": ratio(service_pps, peer_pps),
            "vs_peer_concurrent": ratio(concurrent_pps, peer_pps)}


def per_layer_ms(pairs_per_s: float | None, layers: int | None) -> float | None:
    """Milliseconds a pair per layer: what scales to the published depth."""
    if not pairs_per_s or not layers:
        return None
    return 1000 / pairs_per_s / layers


def rerank_targets(shapes: Sequence[Mapping], clients: int) -> list[dict]:
    """Both ratios of every shape against TARGET (a ratio not measured is not missed)."""
    out = []
    for shape in shapes:
        for key, who in (("vs_peer", "1 client"), ("vs_peer_concurrent", f"{clients} clients")):
            value = shape.get(key)
            out.append({"key": f"{shape['name']}.{key}",
                        "label": f"{shape['name']}, {who} / CrossEncoder.predict",
                        "target": f">= {TARGET:g}", "value": value,
                        "met": None if value is None else value >= TARGET})
    return out


def build_rerank_document(*, started: str, quick: bool, repeats: int, concurrent_repeats: int,
                          machine: dict, workload: dict, peer: dict, shapes: list[dict],
                          elapsed_s: float) -> dict:
    return {"schema": SCHEMA, "started": started, "quick": quick, "repeats": repeats,
            "concurrent_repeats": concurrent_repeats,
            "elapsed_s": round(elapsed_s, 1), "machine": machine, "workload": workload,
            "peer": peer, "shapes": shapes,
            "targets": rerank_targets(shapes, workload["clients"])}


def save_rerank_result(root: Path, doc: dict) -> Path:
    """bench-results/rerank-<UTC time>.json and rerank-latest.json beside it (as save_result
    does for the embedding bench, whose latest.json this leaves alone)."""
    folder = Path(root) / RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("rerank-" + doc["started"].replace(":", "").replace("-", "") + ".json")
    text = json.dumps(doc, indent=2) + "\n"
    path.write_text(text)
    (folder / "rerank-latest.json").write_text(text)
    return path
