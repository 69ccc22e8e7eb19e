"""The same step semantics as `pipelines.plan`, in this process and without Ray.

The reference for "operators called directly" in benchmarks, and a way to test a
global operator's stages on a list of batches. A reduce stage sees all side records at
once, which trivially satisfies "whole groups per call".
"""

from __future__ import annotations

from functools import partial

import pyarrow as pa

from operators.base import GlobalOperator, MapOperator, Operator
from pipelines import columns as C
from pipelines import plan, unique_ids
from pipelines.reader import read_shard
from pipelines.shards import Shard
from pipelines.steps import apply_step


def run_operators(batches: list[pa.Table], operators: list[Operator],
                  metrics: dict[int, dict] | None = None) -> list[pa.Table]:
    """Apply `operators` (steps 1..n) to carried batches from `pipelines.reader`.

    Resolve stages' step metrics are stored into `metrics` when given.
    """
    for step, op in enumerate(operators, start=1):
        if isinstance(op, MapOperator):
            op.setup()
            batches = [apply_step(b, op.process, op, step, last_stage=True) for b in batches]
            continue
        if not isinstance(op, GlobalOperator):
            raise TypeError(f"{op.name} is neither a map nor a global operator")
        stages = op.stages()
        side: pa.Table | None = None
        for i, stage in enumerate(stages):
            fn = partial(apply_step, fn=stage.fn, op=op, step=step,
                         last_stage=i == len(stages) - 1)
            if stage.kind == "map":
                batches = [fn(b) for b in batches]
            elif stage.kind == "emit":
                side = _concat([plan._emit(b, stage.fn) for b in batches])
            elif stage.kind == "reduce":
                side = plan._reduce(side, stage.fn)
            elif stage.kind == "resolve":
                records = plan.side_records(side)
                orders = plan.referenced_orders(records, stage.refs)
                rows = _concat([plan._select(b, orders, stage.columns, stage.prepare)
                                for b in batches])
                decisions = stage.fn(records, rows)
                if metrics is not None:
                    metrics[step] = plan.step_metrics(decisions)
                decisions = decisions.sort_by(C.ORDER)
                batches = [plan._attach(b, decisions) for b in batches]
    return batches


def _concat(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables, promote_options="permissive")


def read_shards(shards: list[Shard], text_column: str, id_column: str, max_doc_bytes: int,
                batch_rows: int) -> list[pa.Table]:
    """Every shard's carried batches, as `pipelines.plan` reads them (duplicate ids
    quarantined too), in this process."""
    duplicates = unique_ids.duplicates_in_process(shards, id_column)
    return [b for s in shards
            for b in read_shard(s, text_column, id_column, max_doc_bytes, batch_rows, duplicates)]
