"""Turning a list of operators into a Ray Data plan.

(duplicate-id pre-pass) -> read shards -> one `map_batches` per map operator (an actor
pool if model-backed) -> each global operator's stages -> one write task per input
shard. Side records (emit/reduce) are Ray task outputs, grouped by key with a
task-based shuffle; a resolve stage gathers only the side records and the rows they
name. No stage gathers or shuffles the corpus.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data

from operators.base import ORDER_COLUMN, GlobalOperator, MapOperator, Operator, Stage
from pipelines import checkpoints, unique_ids
from pipelines import columns as C
from pipelines.reader import read_shard
from pipelines.shards import Shard
from pipelines.steps import apply_step
from pipelines.writer import ShardWriter

SIDE_SECONDS, SIDE_PLACEHOLDER = "_side_seconds", "_side_placeholder"
ACTOR_CPUS = 0.5  # fractional, so an actor pool never starves read/write tasks on small nodes
# A task whose worker process dies (OOM kill, node loss) is re-run; every task is a pure
# function of its input block and files are written atomically under fixed names, so a
# retry neither loses nor duplicates rows. Errors raised by our code are not retried.
RETRIES = {"max_retries": 3}
ACTOR_RETRIES = {"max_restarts": 3, "max_task_retries": 3}
# Ray 2.60 warns that extra remote args will move to named parameters in 2.64; Ray is
# pinned below 2.61, and these are the retry settings we mean to pass today.
warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated",
                        category=DeprecationWarning)


class ReadShards:
    """Reads shards by index; `duplicates` is the object ref of the `duplicate_id` table
    (`find_duplicate_ids`), put once and fetched by each read task."""

    def __init__(self, shards: list[Shard], text_column: str, id_column: str,
                 max_doc_bytes: int, batch_rows: int, duplicates=None) -> None:
        self.shards = {s.index: s for s in shards}
        self.args = (text_column, id_column, max_doc_bytes, batch_rows)
        self.duplicates = duplicates

    def __call__(self, batch: dict):
        duplicates = ray.get(self.duplicates) if self.duplicates is not None else None
        for index in batch["shard"]:
            yield from read_shard(self.shards[int(index)], *self.args, duplicates)


def find_duplicate_ids(shards: list[Shard], id_column: str) -> pa.Table | None:
    """The rows to quarantine as `duplicate_id` (`unique_ids.quarantine`), or None when no
    shard has input ids.

    A pre-pass in Ray tasks, before the read: one task per shard reads only its ids and
    keeps them in the object store, sending on (hash, shard, row) records; these are
    grouped by hash (`_shuffle_reduce`), and only records whose hash is shared come to
    the driver, where their ids (fetched from the shard tasks' outputs) decide. The
    driver never sees the ids of a corpus without duplicates.
    """
    with_ids = [s for s in shards if s.has_id and s.rows]
    if not with_ids:
        return None
    scan = ray.remote(_scan_ids).options(num_returns=2, **RETRIES)
    scans = [scan.remote(s, id_column) for s in with_ids]
    ids_of = {s.index: ids for s, (_, ids) in zip(with_ids, scans, strict=True)}
    groups = _shuffle_reduce([keys for keys, _ in scans], unique_ids.HASH, unique_ids.colliding)
    candidates = side_records(_concat_refs(groups))
    if not candidates.num_rows:
        return unique_ids.QUARANTINE_SCHEMA.empty_table()
    shard_of = candidates["shard"].to_numpy()
    named = _concat_refs([
        _task(unique_ids.attach_ids).remote(candidates.filter(pa.array(shard_of == s)),
                                            ids_of[int(s)])
        for s in np.unique(shard_of)])
    return unique_ids.quarantine(unique_ids.find_duplicates(named), shards)


def _scan_ids(shard: Shard, id_column: str) -> tuple[pa.Table, pa.Table]:
    """(hash, shard, row) records to shuffle, and (row, id, line) kept for candidates."""
    records = unique_ids.id_records(shard, id_column)
    return (records.select([f.name for f in unique_ids.KEY_SCHEMA]),
            records.select(["row", "id", "line"]))


class MapStep:
    """Runs a map operator as step `step`; `setup()` happens once per worker."""

    def __init__(self, op: MapOperator, step: int) -> None:
        self.op = op
        self.step = step
        op.setup()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return apply_step(batch, self.op.process, self.op, self.step, last_stage=True)


class Plan:
    """Builds the dataset step by step; `driver_seconds` records resolve-stage time."""

    def __init__(self, concurrency: int | None) -> None:
        self.concurrency = concurrency
        self.driver_seconds: dict[int, float] = defaultdict(float)
        self.metrics: dict[int, dict] = {}
        self.id_check_seconds = 0.0  # wall time of the duplicate-id pre-pass (driver)

    def read(self, shards: list[Shard], reader: ReadShards) -> ray.data.Dataset:
        ds = ray.data.from_items([{"shard": s.index} for s in shards],
                                 override_num_blocks=max(1, len(shards)))
        return ds.map_batches(reader, batch_size=1, concurrency=self.concurrency, **RETRIES)

    def map_op(self, ds: ray.data.Dataset, op: MapOperator, step: int) -> ray.data.Dataset:
        if op.uses_actor:
            return ds.map_batches(MapStep, fn_constructor_args=(op, step), batch_format="pyarrow",
                                  compute=ray.data.ActorPoolStrategy(size=self.concurrency or 1),
                                  num_cpus=ACTOR_CPUS, **ACTOR_RETRIES)
        return ds.map_batches(MapStep(op, step), batch_format="pyarrow",
                              concurrency=self.concurrency, **RETRIES)

    def global_op(self, ds: ray.data.Dataset, op: GlobalOperator, step: int) -> ray.data.Dataset:
        stages = op.stages()
        blocks: list = []
        side: list = []  # object refs of side-record tables
        for i, stage in enumerate(stages):
            last = i == len(stages) - 1
            fn = partial(apply_step, fn=stage.fn, op=op, step=step, last_stage=last)
            if stage.kind == "map":
                ds = ds.map_batches(fn, batch_format="pyarrow", concurrency=self.concurrency,
                                    **RETRIES)
            elif stage.kind == "emit":
                ds = ds.materialize()  # rows are read again after the resolve stage
                blocks = ds.to_arrow_refs()
                side = [_task(_emit).remote(b, stage.fn) for b in blocks]
            elif stage.kind == "reduce":
                side = _shuffle_reduce(side, stage.key, stage.fn)
            elif stage.kind == "resolve":
                ds = self._resolve(ds, blocks, side, stage, step)
            else:
                raise ValueError(f"{op.name}: unknown stage kind {stage.kind!r}")
        return ds

    def _resolve(self, ds: ray.data.Dataset, blocks: list, side: list, stage: Stage,
                 step: int) -> ray.data.Dataset:
        gathered = _concat_refs(side)
        records = side_records(gathered)
        self.driver_seconds[step] += side_seconds(gathered)
        orders = ray.put(referenced_orders(records, stage.refs))
        # Only the rows named by side records travel to the driver: proportional to the
        # rows in candidate pairs, not to the corpus.
        rows = _concat_refs([_task(_select).remote(b, orders, stage.columns, stage.prepare)
                             for b in blocks])
        # Only the operator's own work counts: gathering above waits on upstream Ray work,
        # which would make ops.seconds (CPU time in the step) include other steps.
        start = time.perf_counter()
        decisions = stage.fn(records, rows)
        self.driver_seconds[step] += time.perf_counter() - start
        self.metrics[step] = step_metrics(decisions)
        decisions = decisions.sort_by(ORDER_COLUMN)
        return ds.map_batches(_attach, fn_kwargs={"decisions": decisions},
                              batch_format="pyarrow", **RETRIES)

    def write(self, ds: ray.data.Dataset, writer: ShardWriter) -> Iterator[pa.Table]:
        """Run the dataset and write each input shard; yields one summary per shard.

        No stage moves rows between blocks (only side records are shuffled), so every
        block holds rows of one or two neighbouring input shards. Each shard is written
        by one task from the blocks that hold its rows, instead of re-sorting the whole
        corpus by shard (measured: that sort was the largest pass over the corpus).
        """
        blocks = ds.to_arrow_refs()
        holders: dict[int, list] = defaultdict(list)
        shards_of = ray.get([_task(_shards_in).remote(b) for b in blocks])
        for block, shards in zip(blocks, shards_of, strict=True):
            for shard in shards:
                holders[shard].append(block)
        pending = [_task(_write_shard).remote(writer, shard, *refs)
                   for shard, refs in sorted(holders.items())]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])


def build(shards: list[Shard], operators: list[Operator], writer: ShardWriter, *,
          text_column: str, id_column: str, max_doc_bytes: int, batch_rows: int,
          concurrency: int | None, resume: checkpoints.Resume) -> tuple[Iterator[pa.Table], Plan]:
    """The run's per-shard write summaries (a lazy iterator: iterating runs the plan;
    only the duplicate-id pre-pass runs here, before it), starting after `resume.step`
    from its checkpoint if there is one.

    Each global operator's output is checkpointed (see `pipelines.checkpoints`), except
    the last step's.
    """
    plan = Plan(concurrency)
    plan.driver_seconds.update(resume.driver_seconds)
    plan.metrics.update(resume.metrics)
    if resume.step:
        # the read (and its duplicate-id pre-pass, a pure function of the input files) is
        # inside the checkpoint
        ds = checkpoints.load(checkpoints.step_dir(resume.run_dir, resume.step))
    else:
        start = time.perf_counter()
        duplicates = find_duplicate_ids(shards, id_column)
        plan.id_check_seconds = time.perf_counter() - start
        if duplicates is not None:
            plan.metrics[0] = {"duplicate_ids": duplicates.num_rows}
        ds = plan.read(shards, ReadShards(shards, text_column, id_column, max_doc_bytes,
                                          batch_rows,
                                          None if duplicates is None else ray.put(duplicates)))
    has_rows = any(s.rows for s in shards)
    last = len(operators)
    for step, op in enumerate(operators, start=1):
        if step <= resume.step:
            continue
        if isinstance(op, MapOperator):
            ds = plan.map_op(ds, op, step)
        elif isinstance(op, GlobalOperator):
            ds = plan.global_op(ds, op, step)
            # After the last step only the write remains: re-running it costs less than
            # writing and re-reading a checkpoint of every row.
            if has_rows and step < last:
                ds = checkpoints.save(ds, resume.run_dir, step, plan.driver_seconds,
                                      plan.metrics)
        else:
            raise TypeError(f"{op.name} is neither a map nor a global operator")
    return plan.write(ds, writer), plan


def _shards_in(block: pa.Table) -> list[int]:
    return np.unique(block[C.SHARD].to_numpy()).tolist() if block.num_rows else []


def _write_shard(writer: ShardWriter, shard: int, *blocks: pa.Table) -> pa.Table:
    return writer(pa.concat_tables([b.filter(pc.equal(b[C.SHARD], shard)) for b in blocks],
                                   promote_options="permissive"))


def referenced_orders(side: pa.Table, refs: tuple[str, ...]) -> np.ndarray:
    """The distinct `_order`s named in the side-record columns `refs`."""
    named = [side[r].to_numpy(zero_copy_only=False) for r in refs if r in side.column_names]
    return np.unique(np.concatenate(named or [np.empty(0)])).astype(np.int64)


def step_metrics(decisions: pa.Table) -> dict:
    """Step-level figures a resolve stage reports in its output's `curate.metrics`."""
    raw = (decisions.schema.metadata or {}).get(b"curate.metrics")
    return json.loads(raw) if raw else {}


def _live(batch: pa.Table) -> pa.Table:
    return batch.filter(pc.is_null(batch[C.DROP_STEP]))


def _emit(batch: pa.Table, fn) -> pa.Table:
    if not batch.num_rows:  # Ray Data's empty blocks carry no columns
        return pa.table({})
    start = time.perf_counter()
    out = fn(_live(batch))
    return _timed_side(out, time.perf_counter() - start)


def _reduce(records: pa.Table, fn) -> pa.Table:
    carried = side_seconds(records)
    start = time.perf_counter()
    out = fn(side_records(records))
    return _timed_side(out, carried + time.perf_counter() - start)


def _timed_side(out: pa.Table, seconds: float) -> pa.Table:
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
    """Seconds carried by side records (see `_timed_side`)."""
    if SIDE_SECONDS not in side.column_names:
        return 0.0
    return float(pc.sum(side[SIDE_SECONDS]).as_py() or 0.0)


def side_records(side: pa.Table) -> pa.Table:
    """The operator's own side records: placeholders and timing columns removed."""
    if SIDE_PLACEHOLDER not in side.column_names:
        return side
    real = side.filter(pc.invert(side[SIDE_PLACEHOLDER]))
    return real.drop_columns([SIDE_SECONDS, SIDE_PLACEHOLDER])


def _select(batch: pa.Table, orders: np.ndarray, columns: tuple[str, ...],
            prepare=None) -> pa.Table:
    if not batch.num_rows:
        return pa.table({})
    live = _live(batch)
    mask = np.isin(live[C.ORDER].to_numpy(), orders)
    rows = live.filter(pa.array(mask)).select([C.ORDER, *columns])
    return prepare(rows) if prepare is not None else rows


def _attach(batch: pa.Table, decisions: pa.Table) -> pa.Table:
    """Left-join the resolve stage's columns onto the rows by `_order`."""
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


def _task(fn):
    return ray.remote(fn).options(**RETRIES)


def _concat_refs(refs: list) -> pa.Table:
    tables = [t for t in ray.get(refs) if t.num_rows]
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})


def _shuffle_reduce(side: list, key: str, fn) -> list:
    """Group side records by `key` and reduce each group with `fn` (a map-reduce shuffle
    in Ray tasks): every side block is split by key into P parts and reducer p gets part
    p of every block, so each key lands in exactly one reducer. Side records are small
    (a key and a row per record); plain tasks on already-running workers cost less than
    a Ray Data sort, which started new workers for its sample/map/reduce phases
    (measured ~5 s of a 28 s run at 100k docs)."""
    if not side:
        return []
    parts = max(1, min(len(side), int(ray.cluster_resources().get("CPU", 1))))
    if parts == 1:
        return [_task(_reduce_parts).remote(fn, *side)]
    split = ray.remote(_split_by_key).options(num_returns=parts, **RETRIES)
    pieces = [split.remote(block, key, parts) for block in side]
    return [_task(_reduce_parts).remote(fn, *[p[i] for p in pieces]) for i in range(parts)]


def _split_by_key(block: pa.Table, key: str, parts: int) -> tuple[pa.Table, ...]:
    """`block` cut into `parts` tables by integer key modulo `parts` (nulls: part 0)."""
    values = pc.fill_null(block[key], 0).to_numpy() if block.num_rows else np.empty(0, np.int64)
    if not np.issubdtype(values.dtype, np.integer):
        raise TypeError(f"reduce key {key!r} must be an integer column, got {block[key].type}")
    part = values % parts
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    taken = block.take(pa.array(order))
    return tuple(taken.slice(bounds[i], bounds[i + 1] - bounds[i]) for i in range(parts))


def _reduce_parts(fn, *parts: pa.Table) -> pa.Table:
    records = pa.concat_tables([p for p in parts if p.num_rows] or parts[:1],
                               promote_options="permissive")
    return _reduce(records, fn)
