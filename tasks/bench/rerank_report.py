"""The table people read for `inv bench --rerank`; the JSON document carries the same figures
(pure)."""
from __future__ import annotations

from typing import Mapping

from tasks.bench.rerank_document import TARGET, per_layer_ms
from tasks.bench.stats import fmt

MARKS = {True: "met", False: "NOT MET", None: "not measured"}


def format_rerank_report(doc: Mapping) -> str:
    m, w, peer = doc["machine"], doc["workload"], doc["peer"]
    lines = [f"inv bench --rerank: {doc['started']}  CPU {m['cpu']} ({m['cores']} cores), "
             f"{m['platform']}; load avg {m['loadavg_start']} -> {m['loadavg_end']}",
             f"workload: 1 query x {w['documents']} documents, sent by 1 client, and by "
             f"{w['clients']} clients at once",
             f"  query: {w['query']!r}",
             f"  documents: the first {w['documents']} paragraphs of {w['source']} "
             f"(sha256 {w['sha256'][:12]})",
             f"  medians of {doc['repeats']} interleaved runs ({w['clients']} clients at once: "
             f"{doc.get('concurrent_repeats')}){' (--quick)' if doc['quick'] else ''}",
             *peer_lines(peer, w["clients"])]
    for shape in doc["shapes"]:
        lines += [""] + format_shape(shape, w["clients"])
    lines += ["", "targets:"]
    for target in doc["targets"]:
        lines.append(f"  {target['label']:<58} {fmt(target['value'], '.2f', 'x'):>7}  "
                     f"(target {target['target']}): {MARKS[target['met']]}")
    lines.append(f"elapsed {doc['elapsed_s']:.0f} s")
    return "\n".join(lines)


def peer_lines(peer: Mapping, clients: int) -> list[str]:
    if not peer.get("measured"):
        return [f"peer: not measured ({peer.get('reason')})"]
    return [f"peer: sentence-transformers {peer.get('sentence_transformers')} "
            f"CrossEncoder.predict(batch_size={peer.get('batch_size')}) on torch "
            f"{peer.get('torch')} ({peer.get('torch_threads')} threads)",
            f"  {clients} clients: {clients} requests one after another (it has no server), "
            "so its 1-client rate"]


def format_shape(shape: Mapping, clients: int) -> list[str]:
    """One shape's table: pairs/s per side, the ratios and the verdicts, ms per pair per layer."""
    layers, published = shape.get("layers"), shape.get("published_layers")
    depth = (f"{layers} layers" if layers == published
             else f"{layers} of its {published} layers (compare per layer)")
    lines = [f"{shape['name']}: {shape.get('architecture')}, hidden {shape.get('hidden')}, "
             f"{depth}",
             f"  max length {shape.get('max_length')}, precision {shape.get('precision')}, "
             f"forward {shape.get('forward')}; "
             f"{fmt(shape.get('tokens_per_pair'), '.1f')} tokens a pair after truncation"]
    head = f"{'  pairs/s':<24}{'service':>10}{'peer (ST)':>11}{'service/peer':>14}  target"
    lines += [head, "  " + "-" * (len(head) - 2)]
    for label, ours, theirs, key in (
            ("1 client", "service_pps", "peer_pps", "vs_peer"),
            (f"{clients} clients", "service_concurrent_pps", "peer_concurrent_pps",
             "vs_peer_concurrent")):
        value = shape.get(key)
        verdict = MARKS[None if value is None else value >= TARGET]
        lines.append(f"{'  ' + label:<24}{fmt(shape.get(ours)):>10}{fmt(shape.get(theirs)):>11}"
                     f"{fmt(value, '.2f', 'x'):>14}  >= {TARGET:g}: {verdict}")
    per_layer = [f"{who} {fmt(per_layer_ms(shape.get(key), layers), '.2f')}"
                 for who, key in (("service 1 client", "service_pps"),
                                  (f"{clients} clients", "service_concurrent_pps"),
                                  ("peer", "peer_pps"))]
    lines.append("  ms a pair per layer: " + ", ".join(per_layer))
    refusals = shape.get("refusals") or []
    if any(refusals):
        waits = shape.get("retry_after_s") or [0]
        lines += [f"  {clients} clients: {sum(refusals)} answers 429 (admission) over "
                  f"{len(refusals)} runs, Retry-After {min(waits):g}-{max(waits):g} s;",
                  "    each refused request was sent again after it, the waits included"]
    return lines
