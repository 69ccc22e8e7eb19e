"""What each stage kind of a global operator means, as pure functions over Arrow tables.

`run_global` walks an operator's stages once and asks an `Executor` for the few data
movements they need (map the rows, emit and reduce side records, gather for a resolve,
sample for a fit, share a value). `pipelines.plan` (Ray) and `pipelines.inprocess`
(this process) implement those movements and nothing else, so both run the same
functions on the same tables and write the same bytes. No Ray here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import POPULATION_KEY, GlobalOperator, Stage
from pipelines import columns as C
from pipelines import progress
from pipelines.fitted import FitStore
from pipelines.steps import apply_step

SIDE_SECONDS, SIDE_PLACEHOLDER = "_side_seconds", "_side_placeholder"
SAMPLE_KEY = "_sample_key"
GROUP_BYTES = 64 << 20  # projected rows a grouped-stage worker holds at once (see Stage)


class Value(Protocol):
    """A fitted value shared with the workers; `get()` returns it where it runs."""

    def get(self) -> Any: ...


@dataclass(frozen=True)
class LocalValue:
    value: Any

    def get(self) -> Any:
        return self.value


@dataclass
class StageCall:
    """Stage `index` of `op`, callable on a table wherever it runs.

    Built from the operator, not from a bound method, so that in an actor the function
    sees the state that actor's `setup()` loaded. `purpose` says which stage function
    to apply: `map` (rows -> rows), `emit` (rows -> side records), `reduce` (side ->
    side), `project` and `groups` (the two halves of a grouped stage).
    """

    op: GlobalOperator
    step: int
    index: int
    last: bool
    purpose: str
    values: dict[str, Value] = field(default_factory=dict)

    def setup(self) -> None:
        self.op.setup()

    @property
    def stage(self) -> Stage:
        return self.op.stages()[self.index]

    def fn(self) -> Callable:
        stage = self.stage
        return partial(stage.fn, **{name: self.values[name].get() for name in stage.uses})

    def __call__(self, table: pa.Table) -> pa.Table:
        stage = self.stage
        if self.purpose == "map":
            return apply_step(table, self.fn(), self.op, self.step, self.last, stage.name)
        start = time.time()
        if self.purpose == "emit":
            out = emit(table, self.fn())
        elif self.purpose == "reduce":
            out = reduce(table, self.fn())
        elif self.purpose == "project":
            out = emit(table, partial(project, key=stage.key, columns=stage.columns))
        elif self.purpose == "groups":
            out = reduce(table, partial(apply_groups, key=stage.key, fn=self.fn()))
        else:
            raise ValueError(f"unknown stage call purpose {self.purpose!r}")
        # Emit and project see rows; reduce and groups see side records. A grouped
        # stage's two halves count apart, so its rows and records are never summed.
        rows = self.purpose in ("emit", "project")
        label = f"{stage.name}/groups" if self.purpose == "groups" else stage.name
        progress.report(self.step, label,
                        progress.live_rows(table) if rows else table.num_rows, None,
                        start, time.time(), progress.ROWS if rows else progress.RECORDS)
        return out


class Executor(Protocol):
    """The data movements a global operator's stages need; see `run_global`."""

    def map_rows(self, call: StageCall, actor: bool) -> None:
        """Replace the rows by `call(batch)` of every batch."""

    def emit(self, call: StageCall) -> None:
        """Side records := `call(batch)` of every batch of rows (rows are kept)."""

    def reduce(self, call: StageCall, key: str, actor: bool) -> None:
        """Side records := `call(part)` of parts holding whole groups of `key`."""

    def gather_side(self) -> pa.Table:
        """All side records, in this process (a resolve, or a grouped stage's output)."""

    def select_rows(self, orders: np.ndarray, columns: tuple[str, ...],
                    prepare: Callable | None) -> pa.Table:
        """`select` of every batch of rows, gathered in this process."""

    def attach(self, decisions: pa.Table) -> None:
        """Replace the rows by `attach(batch, decisions)` of every batch."""

    def record_metrics(self, step: int, metrics: dict) -> None:
        """Step `step`'s figures, for `ops.metrics`."""

    def sample(self, columns: tuple[str, ...], n: int, seed: int) -> pa.Table:
        """At most `n` live rows' `_order` and `columns`, chosen by `sample_candidates`."""

    def share(self, value: Any) -> Value:
        """Make `value` available to the workers once."""

    def driver_time(self, step: int, seconds: float) -> None:
        """Count `seconds` of work done in this process towards step `step`."""


def run_global(op: GlobalOperator, step: int, ex: Executor,
               store: FitStore | None = None) -> None:
    """Run every stage of `op` as step `step` through `ex`; fit values are recorded in
    `store` (and taken from it when a resumed run already computed them)."""
    stages = op.stages()
    values: dict[str, Value] = {}
    for i, stage in enumerate(stages):
        unknown = set(stage.uses) - set(values)
        if unknown:
            raise ValueError(f"{op.name}: stage {stage.name!r} uses {sorted(unknown)}, "
                             "which no earlier fit stage computes")

        def call(purpose: str, i: int = i) -> StageCall:
            return StageCall(op, step, i, i == len(stages) - 1, purpose, dict(values))

        if stage.kind == "map":
            ex.map_rows(call("map"), stage.actor)
        elif stage.kind == "emit":
            ex.emit(call("emit"))
        elif stage.kind == "reduce":
            ex.reduce(call("reduce"), stage.key, actor=False)
        elif stage.kind == "resolve":
            _resolve(call("resolve"), stage, ex)
        elif stage.kind == "grouped":
            ex.emit(call("project"))
            ex.reduce(call("groups"), stage.key, stage.actor)
            _attach_groups(step, stage, ex)
        elif stage.kind == "fit":
            values[stage.name] = ex.share(_fit(op, step, stage, ex, store, values))
        else:
            raise ValueError(f"{op.name}: unknown stage kind {stage.kind!r}")


def _resolve(call: StageCall, stage: Stage, ex: Executor) -> None:
    gathered = ex.gather_side()
    records = side_records(gathered)
    ex.driver_time(call.step, side_seconds(gathered))
    # Only the rows named by side records come to this process: proportional to the
    # rows in candidate pairs, not to the corpus.
    rows = ex.select_rows(referenced_orders(records, stage.refs), stage.columns, stage.prepare)
    # Only the operator's own work counts: gathering above waits on upstream work, which
    # would make ops.seconds (CPU time in the step) include other steps.
    began = time.time()
    progress.report(call.step, stage.name, 0, None, began, began, progress.RECORDS)
    start = time.process_time()
    decisions = call.fn()(records, rows)
    ex.driver_time(call.step, time.process_time() - start)
    progress.report(call.step, stage.name, records.num_rows, None, began, time.time(),
                    progress.RECORDS)
    ex.record_metrics(call.step, step_metrics(decisions))
    ex.attach(decisions.sort_by(C.ORDER))


def _attach_groups(step: int, stage: Stage, ex: Executor) -> None:
    """A grouped stage's output (keyed by `_order`) attached to the rows; its metrics."""
    gathered = ex.gather_side()
    ex.driver_time(step, side_seconds(gathered))
    decisions = attachable(gathered)
    if decisions is not None:
        ex.attach(decisions)
    if stage.metrics is not None:
        ex.record_metrics(step, stage.metrics(decisions if decisions is not None
                                              else pa.table({})))


def _fit(op: GlobalOperator, step: int, stage: Stage, ex: Executor, store: FitStore | None,
         values: dict[str, Value]) -> Any:
    if store is not None and (saved := store.load(step, stage.name)) is not None:
        return saved
    if stage.sample < 1:
        raise ValueError(f"{op.name}: fit stage {stage.name!r} needs a sample size >= 1")
    sample = ex.sample(stage.columns, stage.sample, op.ctx.seed)
    began = time.time()
    progress.report(step, stage.name, 0, None, began, began, progress.SAMPLE)
    start = time.process_time()
    value = stage.fn(sample, **{name: values[name].get() for name in stage.uses})
    ex.driver_time(step, time.process_time() - start)
    progress.report(step, stage.name, sample.num_rows, None, began, time.time(),
                    progress.SAMPLE)
    if store is not None:
        store.save(step, stage.name, value)
    return value


# ---- side records -----------------------------------------------------------------------

def live(batch: pa.Table) -> pa.Table:
    return batch.filter(pc.is_null(batch[C.DROP_STEP]))


def emit(batch: pa.Table, fn: Callable[[pa.Table], pa.Table]) -> pa.Table:
    """Side records of a batch's live rows, timed."""
    if not batch.num_rows:  # Ray Data's empty blocks carry no columns
        return pa.table({})
    start = time.process_time()
    out = fn(live(batch))
    return timed_side(out, time.process_time() - start)


def reduce(records: pa.Table, fn: Callable[[pa.Table], pa.Table]) -> pa.Table:
    """`fn` on side records (whole groups), timed; carries the inputs' seconds on."""
    carried = side_seconds(records)
    start = time.process_time()
    out = fn(side_records(records))
    return timed_side(out, carried + time.process_time() - start)


def timed_side(out: pa.Table, seconds: float) -> pa.Table:
    """Side records carrying the seconds spent making them, so `ops.seconds` counts emit
    and reduce work done on the workers. An empty output carries them in one all-null
    placeholder record, so no time is lost; `side_records` removes placeholders."""
    placeholder = out.num_rows == 0
    if placeholder:
        out = pa.Table.from_pylist([{}], schema=out.schema)
    n = out.num_rows
    return (out.append_column(SIDE_SECONDS, pa.array(np.full(n, seconds / n)))
            .append_column(SIDE_PLACEHOLDER, pa.array(np.full(n, placeholder))))


def side_seconds(side: pa.Table) -> float:
    """Seconds carried by side records (see `timed_side`)."""
    if SIDE_SECONDS not in side.column_names:
        return 0.0
    return float(pc.sum(side[SIDE_SECONDS]).as_py() or 0.0)


def side_records(side: pa.Table) -> pa.Table:
    """The operator's own side records: placeholders and timing columns removed."""
    if SIDE_PLACEHOLDER not in side.column_names:
        return side
    real = side.filter(pc.invert(side[SIDE_PLACEHOLDER]))
    return real.drop_columns([SIDE_SECONDS, SIDE_PLACEHOLDER])


def concat(tables: list[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})


def split_by_key(block: pa.Table, key: str, parts: int) -> tuple[pa.Table, ...]:
    """`block` cut into `parts` tables by integer key modulo `parts` (nulls: part 0)."""
    values = pc.fill_null(block[key], 0).to_numpy() if block.num_rows else np.empty(0, np.int64)
    if not np.issubdtype(values.dtype, np.integer):
        raise TypeError(f"reduce key {key!r} must be an integer column, got {block[key].type}")
    part = values % parts
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    taken = block.take(pa.array(order))
    return tuple(taken.slice(bounds[i], bounds[i + 1] - bounds[i]) for i in range(parts))


# ---- resolve ----------------------------------------------------------------------------

def referenced_orders(side: pa.Table, refs: tuple[str, ...]) -> np.ndarray:
    """The distinct `_order`s named in the side-record columns `refs`."""
    named = [side[r].to_numpy(zero_copy_only=False) for r in refs if r in side.column_names]
    return np.unique(np.concatenate(named or [np.empty(0)])).astype(np.int64)


def select(batch: pa.Table, orders: np.ndarray, columns: tuple[str, ...],
           prepare: Callable | None = None) -> pa.Table:
    """The live rows of `batch` whose `_order` is in `orders`: `_order` and `columns`."""
    if not batch.num_rows:
        return pa.table({})
    rows = live(batch)
    mask = np.isin(rows[C.ORDER].to_numpy(), orders)
    rows = rows.filter(pa.array(mask)).select([C.ORDER, *columns])
    return prepare(rows) if prepare is not None else rows


def step_metrics(decisions: pa.Table) -> dict:
    """Step-level figures a resolve stage reports in its output's `curate.metrics`."""
    raw = (decisions.schema.metadata or {}).get(b"curate.metrics")
    return json.loads(raw) if raw else {}


def attach(batch: pa.Table, decisions: pa.Table) -> pa.Table:
    """Left-join `decisions` (sorted by `_order`) onto the rows by `_order`."""
    keys = decisions[C.ORDER].to_numpy()
    order = batch[C.ORDER].to_numpy()
    pos = np.searchsorted(keys, order).clip(max=max(len(keys) - 1, 0))
    found = (keys[pos] == order) if len(keys) else np.zeros(len(order), bool)
    index = pa.array(np.where(found, pos, 0), mask=~found) if len(keys) else None
    for name in decisions.column_names:
        if name == C.ORDER:
            continue
        col = decisions[name].combine_chunks()
        values = pc.take(col, index) if index is not None else pa.nulls(len(order), col.type)
        batch = batch.append_column(name, values)
    return batch


def attachable(side: pa.Table) -> pa.Table | None:
    """Gathered side records of a grouped stage, sorted for `attach`; None when there
    are none (no live rows): nothing to attach."""
    records = side_records(side)
    if C.ORDER not in records.column_names:
        return None
    return records.sort_by(C.ORDER)


# ---- fit: a deterministic bounded sample ------------------------------------------------

def _mix(order: np.ndarray, seed: int) -> np.ndarray:
    """A 64-bit hash of each `_order` (splitmix64's finaliser), so the sample is a pure
    function of the rows and the seed, whatever the blocks."""
    with np.errstate(over="ignore"):
        z = order.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % (1 << 64))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def sample_candidates(batch: pa.Table, columns: tuple[str, ...], n: int, seed: int
                      ) -> tuple[pa.Table, int]:
    """A batch's share of the sample: its live rows with the `n` smallest sample keys,
    and how many live rows it has.

    The `n` smallest keys overall are among the union of every batch's `n` smallest, so
    each worker sends at most `n` rows.
    """
    if not batch.num_rows:
        return pa.table({}), 0
    rows = live(batch).select([C.ORDER, *columns])
    population = rows.num_rows
    keys = _mix(rows[C.ORDER].to_numpy(), seed)
    if len(keys) > n:
        keep = np.argpartition(keys, n - 1)[:n]
        rows, keys = rows.take(pa.array(keep)), keys[keep]
    return rows.append_column(SAMPLE_KEY, pa.array(keys, pa.uint64())), population


def merge_sample(parts: list[tuple[pa.Table, int]], n: int) -> pa.Table:
    """The `n` candidates with the smallest keys, in input order; the live rows of all
    batches are recorded as the sample's population (`operators.base.population`)."""
    candidates = concat([table for table, _ in parts])
    total = sum(count for _, count in parts)
    if candidates.num_rows:
        keys = candidates[SAMPLE_KEY].to_numpy()
        keep = np.argsort(keys, kind="stable")[:n]
        candidates = candidates.take(pa.array(keep)).drop_columns([SAMPLE_KEY]).sort_by(C.ORDER)
    meta = dict(candidates.schema.metadata or {})
    meta[POPULATION_KEY] = str(total).encode()
    return candidates.replace_schema_metadata(meta)


# ---- grouped ----------------------------------------------------------------------------

def project(rows: pa.Table, key: str, columns: tuple[str, ...]) -> pa.Table:
    """What a grouped stage moves between workers: `_order`, the key and `columns`."""
    return rows.select([C.ORDER, key, *[c for c in columns if c != key]])


def apply_groups(records: pa.Table, key: str, fn: Callable[[pa.Table], pa.Table]) -> pa.Table:
    """`fn` on each group of equal `key` (in key order, rows in input order); the
    outputs, keyed by `_order`, concatenated."""
    if not records.num_rows:
        return pa.table({C.ORDER: pa.array([], pa.int64())})
    records = records.sort_by([(key, "ascending"), (C.ORDER, "ascending")])
    keys = records[key].to_numpy(zero_copy_only=False)
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    outs = [fn(records.slice(a, b - a)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return pa.concat_tables(outs, promote_options="permissive")
