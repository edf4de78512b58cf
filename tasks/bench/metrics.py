"""The service's /metrics read as numbers: Prometheus text through prometheus_client's own
parser, and the one figure the bench takes from it (rows per forward pass)."""
from __future__ import annotations

from typing import Mapping

from prometheus_client.parser import text_string_to_metric_families

from tasks.bench.stats import ratio

BATCH_ROWS = "mlx_embed_batch_size_rows"


def sample_key(name: str, labels: Mapping[str, str]) -> str:
    """`name{label="value",...}` as the exposition text writes it (labels in their order)."""
    if not labels:
        return name
    def escaped(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return name + "{" + ",".join(f'{k}="{escaped(v)}"' for k, v in labels.items()) + "}"


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus exposition text -> {'name{labels}': value}; raises ValueError on bad text."""
    return {sample_key(sample.name, sample.labels): float(sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples}


def rows_per_pass(before: Mapping[str, float], after: Mapping[str, float]) -> float | None:
    """Mean rows per forward pass between two /metrics readings (None if the service has no such
    histogram or ran no pass)."""
    if f"{BATCH_ROWS}_count" not in after:
        return None
    passes = after[f"{BATCH_ROWS}_count"] - before.get(f"{BATCH_ROWS}_count", 0.0)
    rows = after[f"{BATCH_ROWS}_sum"] - before.get(f"{BATCH_ROWS}_sum", 0.0)
    return ratio(rows, passes)
