"""The whole run in this process, without Ray: the reference executor.

It runs the same stage functions (`pipelines.stages`) on the same tables as
`pipelines.plan`, so it writes the same bytes; `curate run` uses it for small local
inputs (`execution.engine: auto`), where starting Ray would cost more than the work. A
reduce here sees all side records at once, which trivially satisfies "whole groups
per call". Nothing here imports Ray.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from operators.base import GlobalOperator, MapOperator, Operator
from pipelines import columns as C
from pipelines import progress, unique_ids
from pipelines import stages as S
from pipelines.fitted import FitStore
from pipelines.reader import read_shard
from pipelines.shards import Shard
from pipelines.steps import apply_step
from pipelines.writer import ShardWriter


class InProcess:
    """`stages.Executor` over a list of batches held in memory."""

    def __init__(self, batches: list[pa.Table]) -> None:
        self.batches = batches
        self.side: list[pa.Table] = []
        self.driver_seconds: dict[int, float] = defaultdict(float)
        self.metrics: dict[int, dict] = {}

    def map_rows(self, call: S.StageCall, actor: bool) -> None:
        if actor:
            call.setup()
        self.batches = [call(b) for b in self.batches]

    def emit(self, call: S.StageCall) -> None:
        self.side = [call(b) for b in self.batches]

    def reduce(self, call: S.StageCall, key: str, actor: bool) -> None:
        if actor:
            call.setup()
        self.side = [call(S.concat(self.side))] if self.side else []

    def gather_side(self) -> pa.Table:
        return S.concat(self.side)

    def select_rows(self, orders, columns: tuple[str, ...], prepare) -> pa.Table:
        return S.concat([S.select(b, orders, columns, prepare) for b in self.batches])

    def attach(self, decisions: pa.Table) -> None:
        self.batches = [S.attach(b, decisions) for b in self.batches]

    def record_metrics(self, step: int, metrics: dict) -> None:
        # A step with several reporting stages (two grouped passes and a resolve) adds up.
        self.metrics[step] = {**self.metrics.get(step, {}), **metrics}

    def sample(self, columns: tuple[str, ...], n: int, seed: int) -> pa.Table:
        return S.merge_sample([S.sample_candidates(b, columns, n, seed)
                               for b in self.batches], n)

    def share(self, value: Any) -> S.Value:
        return S.LocalValue(value)

    def driver_time(self, step: int, seconds: float) -> None:
        self.driver_seconds[step] += seconds


def run_operators(batches: list[pa.Table], operators: list[Operator],
                  metrics: dict[int, dict] | None = None,
                  store: FitStore | None = None) -> list[pa.Table]:
    """Apply `operators` (steps 1..n) to carried batches from `pipelines.reader`.

    Resolve stages' step metrics are stored into `metrics` when given.
    """
    ex = InProcess(batches)
    _run(ex, operators, store)
    if metrics is not None:
        metrics.update(ex.metrics)
    return ex.batches


def _run(ex: InProcess, operators: list[Operator], store: FitStore | None) -> None:
    for step, op in enumerate(operators, start=1):
        if isinstance(op, MapOperator):
            op.setup()
            ex.batches = [apply_step(b, op.process, op, step, last_stage=True)
                          for b in ex.batches]
        elif isinstance(op, GlobalOperator):
            S.run_global(op, step, ex, store)
        else:
            raise TypeError(f"{op.name} is neither a map nor a global operator")


def read_shards(shards: list[Shard], text_column: str, id_column: str, max_doc_bytes: int,
                batch_rows: int, metrics: dict[int, dict] | None = None) -> list[pa.Table]:
    """Every shard's carried batches, as `pipelines.plan` reads them (duplicate ids
    quarantined too), in this process; with `metrics`, the step-0 figures the Ray plan
    records (`duplicate_ids`, when some shard has input ids)."""
    duplicates = unique_ids.duplicates_in_process(shards, id_column)
    if metrics is not None and unique_ids.with_input_ids(shards):
        metrics[0] = {"duplicate_ids": duplicates.num_rows}
    return [b for s in shards
            for b in progress.reported_reads(
                read_shard(s, text_column, id_column, max_doc_bytes, batch_rows, duplicates))]


def build(shards: list[Shard], operators: list[Operator], writer: ShardWriter, *,
          text_column: str, id_column: str, max_doc_bytes: int, batch_rows: int,
          store: FitStore | None = None) -> tuple[Iterator[pa.Table], InProcess]:
    """The run's per-shard write summaries, as `pipelines.plan.build` returns them (a lazy
    iterator: iterating runs everything), computed in this process. No checkpoints: a
    small run is cheaper to redo than to resume."""
    ex = InProcess([])

    def summaries() -> Iterator[pa.Table]:
        ex.batches = read_shards(shards, text_column, id_column, max_doc_bytes, batch_rows,
                                 ex.metrics)
        _run(ex, operators, store)
        held = {int(i) for b in ex.batches for i in pc.unique(b[C.SHARD]).to_pylist()}
        for shard in sorted(held):
            yield writer.write_from(shard, ex.batches)

    return summaries(), ex
