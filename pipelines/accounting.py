"""The per-step funnel, and the check that every input row is accounted for."""

from __future__ import annotations

import json

from pipelines.errors import AccountingError
from pipelines.shards import Shard
from pipelines.writer import StepInfo


def _total(values) -> int | None:
    """The sum, or None when any shard did not count (e.g. the tokenizer is off)."""
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def funnel(shards: list[Shard], summaries: list[dict], steps: list[StepInfo],
           driver_seconds: dict[int, float] | None = None,
           metrics: dict[int, dict] | None = None) -> list[dict]:
    """One dict per step: rows in/out/dropped, seconds, metrics, text sizes (`ops`);
    raises on any loss.

    Per shard the writer already proved rows == input rows with no duplicate; here the
    shards are summed and every step checked: rows_in = rows_out + rows_dropped, and the
    last step's rows_out equals the rows actually written.
    """
    by_shard = {s["shard"]: s for s in summaries}
    if len(by_shard) != len(summaries):
        raise AccountingError("a shard was written twice")
    missing = [s.path for s in shards if s.rows and s.index not in by_shard]
    if missing:
        raise AccountingError(f"no rows reached the writer from {missing}")
    total = sum(s.rows for s in shards)
    if sum(s["rows"] for s in summaries) != total:
        raise AccountingError(f"{total} input rows but {sum(s['rows'] for s in summaries)} written")

    rows = []
    rows_in = total
    tokens_in = _total(s.get("tokens") for s in summaries)
    for step in steps:
        dropped = sum(s["dropped"][step.index] for s in summaries)
        out = rows_in - dropped
        sizes = {k: _total(s[k][step.index] if s.get(k) is not None else None
                           for s in summaries) for k in ("bytes_out", "words_out", "tokens_out")}
        rows.append({"step": step.index, "op": step.op, "name": step.name, "rows_in": rows_in,
                     "rows_out": out, "rows_dropped": dropped,
                     "seconds": sum(s["seconds"][step.index] for s in summaries)
                     + (driver_seconds or {}).get(step.index, 0.0),
                     "metrics": json.dumps((metrics or {}).get(step.index, {}), sort_keys=True),
                     "tokens_in": tokens_in, **sizes})
        rows_in, tokens_in = out, sizes["tokens_out"]
    kept = sum(s["kept"] for s in summaries)
    if kept != rows_in:
        raise AccountingError(f"{kept} rows written but the funnel ends at {rows_in}")
    for r in rows:
        if r["rows_in"] != r["rows_out"] + r["rows_dropped"] or r["rows_out"] < 0:
            raise AccountingError(f"step {r['step']} ({r['name']}) does not add up: {r}")
    return rows
