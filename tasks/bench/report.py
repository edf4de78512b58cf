"""The table people read (`inv bench` without --json); the JSON document carries the same
figures."""
from __future__ import annotations

from typing import Mapping

from tasks.bench.precision_sides import format_sides
from tasks.bench.stats import fmt


def format_report(doc: dict) -> str:
    """The table people read; the JSON document carries the same figures."""
    m, s, lines = doc["machine"], doc["service"], []
    lines.append(f"inv bench: {doc['started']}  {m['cpu']} ({m['cores']} cores), "
                 f"{m['platform']}; load avg {m['loadavg_start']} -> {m['loadavg_end']}")
    peer = doc["peer"]
    peer_text = (f"sentence-transformers {peer.get('sentence_transformers')} on torch "
                 f"{peer.get('torch')} ({peer.get('torch_threads')} threads)"
                 if peer.get("measured") else f"not measured ({peer.get('reason')})")
    kernels = f" ({s['blas_kernels']})" if s.get("blas_kernels") else ""
    lines.append(f"service: mlx {s.get('mlx', '?')} on {s.get('device', '?')}, blas "
                 f"{s.get('blas', '?')}{kernels}; in-process blas {s.get('inprocess_blas', '?')}; "
                 f"peer: {peer_text}")
    lines.append(format_model(s, doc.get("shapes") or {}))
    lines.append(f"corpus: {doc['corpus']['path']} ({doc['corpus']['texts']} texts, sha256 "
                 f"{doc['corpus']['sha256'][:12]}); medians of {doc['repeats']} interleaved "
                 f"repeats{' (--quick)' if doc['quick'] else ''}")
    lines.append("")
    head = (f"{'throughput, texts/s':<24}{'in-process':>11}{'HTTP':>9}{'efficiency':>12}"
            f"{'peer (ST)':>11}{'HTTP/peer':>11}")
    lines += [head, "-" * len(head)]
    t = doc["throughput"]
    for row in (*t["workloads"], t["overall"]):
        label = (f"{row['name']} ({row['texts']} x{row['batch_size']})"
                 if row["batch_size"] else f"all ({row['texts']} texts)")
        lines.append(f"{label:<24}{fmt(row.get('inprocess')):>11}{fmt(row.get('http')):>9}"
                     f"{fmt(row.get('efficiency'), '.2f'):>12}{fmt(row.get('peer')):>11}"
                     f"{fmt(row.get('vs_peer'), '.2f', 'x'):>11}")
    lines += format_shapes(doc.get("shapes") or {}, doc.get("one_text") or {}, doc["corpus"])
    lines += format_sides(doc.get("precision_sides"))
    lines.append("")
    b = doc["batching"]
    lines.append(f"batching: {b['clients']} clients x {b['requests_per_client']} one-text "
                 f"requests: coalescing {fmt(b.get('batched_tps'))} texts/s "
                 f"(mean {fmt(b.get('batched_rows_per_pass'), '.1f')} rows/pass), one text per "
                 f"pass {fmt(b.get('unbatched_tps'))} texts/s (mean "
                 f"{fmt(b.get('unbatched_rows_per_pass'), '.1f')} rows/pass): gain "
                 f"{fmt(b.get('gain'), '.2f', 'x')}")
    lines.append(f"  the model's ceiling, in-process: {b['clients']} texts one per pass "
                 f"{fmt(b.get('inprocess_one_by_one_tps'))} texts/s, as one batch "
                 f"{fmt(b.get('inprocess_batch_tps'))} texts/s: "
                 f"{fmt(b.get('inprocess_gain'), '.2f', 'x')}")
    if b.get("note"):
        lines.append(f"  note: {b['note']}")
    lt = doc["latency"]
    lines.append(f"latency, one short text at idle ({lt['requests']} requests): "
                 f"p50 {fmt(lt.get('p50_ms'), '.1f')} ms, p99 {fmt(lt.get('p99_ms'), '.1f')} ms")
    c = doc["cold_start"]
    lines.append(f"cold start, launch to healthy ({len(c['samples_s'])} launches): median "
                 f"{fmt(c.get('median_s'), '.2f')} s (min {fmt(c.get('min_s'), '.2f')}, max "
                 f"{fmt(c.get('max_s'), '.2f')}); first /embed after healthy "
                 f"{fmt(c.get('first_embed_ms'), '.0f')} ms")
    lines.append("")
    lines.append("targets:")
    for target in doc["targets"]:
        mark = {True: "met", False: "NOT MET", None: "not measured"}[target["met"]]
        spec = ".2f"
        lines.append(f"  {target['label']:<46} {fmt(target['value'], spec):>7}  "
                     f"(target {target['target']}): {mark}")
    lines.append(f"elapsed {doc['elapsed_s']:.0f} s")
    return "\n".join(lines)


def format_model(service: Mapping, shapes: Mapping) -> str:
    """The model, its forward pass and precision, and the whole corpus's cost per layer (the
    random full-width models have few layers: per layer is what scales to the real depth)."""
    layers = service.get("layers")
    line = (f"model: {service.get('model', '?')}, forward {service.get('forward', '?')}, "
            f"precision {service.get('precision', '?')} ({service.get('precision_reason', '?')})")
    corpus = next((r for r in shapes.get("workloads", []) if r["name"] == "corpus"), None)
    if layers and corpus:
        per_layer = [f"{name} {1000 / corpus[key] / layers:.2f}" for name, key in
                     (("service", "inprocess"), ("peer", "peer")) if corpus.get(key)]
        line += (f"; {layers} layers, whole corpus ms per text per layer: "
                 + ", ".join(per_layer))
    return line


def format_shapes(shapes: Mapping, one_text: Mapping, corpus: Mapping) -> list[str]:
    """The shapes-of-work table: service (HTTP) against the peer on the same prose."""
    if not shapes.get("workloads"):
        return []
    prose = corpus.get("prose") or {}
    lines = ["", f"shapes of work on {prose.get('path', 'the prose corpus')} ({prose.get('texts')} "
                 f"texts, sha256 {str(prose.get('sha256', ''))[:12]}), texts/s:"]
    head = f"{'shape':<40}{'in-process':>11}{'HTTP':>9}{'peer (ST)':>11}{'HTTP/peer':>11}"
    lines += [head, "-" * len(head)]
    labels = {"corpus": "whole corpus in one call ({n})",
              "chunks": "chunks of {b} in corpus order ({n})",
              "short": "short, one length ({n} x{b})", "medium": "medium, one length ({n} x{b})",
              "long": "long, one length ({n} x{b})"}
    for row in shapes["workloads"]:
        label = labels.get(row["name"], row["name"]).format(n=row["texts"], b=row["batch_size"])
        lines.append(f"{label:<40}{fmt(row.get('inprocess')):>11}{fmt(row.get('http')):>9}"
                     f"{fmt(row.get('peer')):>11}{fmt(row.get('vs_peer'), '.2f', 'x'):>11}")
    if one_text:
        label = f"one text a request, {one_text.get('clients')} clients ({one_text.get('texts')})"
        lines.append(f"{label:<40}{'':>11}{fmt(one_text.get('http_tps')):>9}"
                     f"{fmt(one_text.get('peer_tps')):>11}"
                     f"{fmt(one_text.get('vs_peer'), '.2f', 'x'):>11}")
        lines.append("  (the peer encodes the same texts one at a time, one call each)")
    return lines

