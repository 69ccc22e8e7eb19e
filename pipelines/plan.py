"""Turning a list of operators into a Ray Data plan.

(duplicate-id pre-pass) -> read shards -> one `map_batches` per map operator (an actor
pool if model-backed) -> each global operator's stages -> one write task per input
shard. Side records (emit/reduce) are Ray task outputs, grouped by key with a
task-based shuffle; a resolve stage gathers only the side records and the rows they
name. No stage gathers or shuffles the corpus.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import ray
import ray.data

from operators.base import GlobalOperator, MapOperator, Operator
from pipelines import checkpoints, layout, progress, unique_ids
from pipelines import columns as C
from pipelines import stages as S
from pipelines.fitted import FitStore
from pipelines.reader import read_shard
from pipelines.shards import Shard
from pipelines.steps import apply_step
from pipelines.writer import ShardWriter

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
            yield from progress.reported_reads(
                read_shard(self.shards[int(index)], *self.args, duplicates))


def find_duplicate_ids(shards: list[Shard], id_column: str) -> pa.Table | None:
    """The rows to quarantine as `duplicate_id` (`unique_ids.quarantine`), or None when no
    shard has input ids.

    A pre-pass in Ray tasks, before the read: one task per shard reads only its ids and
    keeps them in the object store, sending on (hash, shard, row) records; these are
    grouped by hash (`_shuffle_reduce`), and only records whose hash is shared come to
    the driver, where their ids (fetched from the shard tasks' outputs) decide. The
    driver never sees the ids of a corpus without duplicates.
    """
    with_ids = unique_ids.with_input_ids(shards)
    if not with_ids:
        return None
    scan = ray.remote(_scan_ids).options(num_returns=2, **RETRIES)
    scans = [scan.remote(s, id_column) for s in with_ids]
    ids_of = {s.index: ids for s, (_, ids) in zip(with_ids, scans, strict=True)}
    groups = _shuffle_reduce([keys for keys, _ in scans], unique_ids.HASH,
                             partial(S.reduce, fn=unique_ids.colliding))
    candidates = S.side_records(_concat_refs(groups))
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

    def tasks(self) -> dict:
        """map_batches' arguments for a task pool of `concurrency` tasks (Ray's default
        when unset); `compute=`, as Ray 2.60 deprecates `concurrency=` for tasks."""
        if self.concurrency is None:
            return {}
        return {"compute": ray.data.TaskPoolStrategy(size=self.concurrency)}

    def read(self, shards: list[Shard], reader: ReadShards) -> ray.data.Dataset:
        ds = ray.data.from_items([{"shard": s.index} for s in shards],
                                 override_num_blocks=max(1, len(shards)))
        return ds.map_batches(reader, batch_size=1, **self.tasks(), **RETRIES)

    def map_op(self, ds: ray.data.Dataset, op: MapOperator, step: int) -> ray.data.Dataset:
        if op.uses_actor:
            return ds.map_batches(MapStep, fn_constructor_args=(op, step), batch_format="pyarrow",
                                  compute=ray.data.ActorPoolStrategy(size=self.concurrency or 1),
                                  num_cpus=ACTOR_CPUS, **ACTOR_RETRIES)
        return ds.map_batches(MapStep(op, step), batch_format="pyarrow", **self.tasks(),
                              **RETRIES)

    def global_op(self, ds: ray.data.Dataset, op: GlobalOperator, step: int,
                  store: FitStore | None = None) -> ray.data.Dataset:
        ex = RayStages(self, ds)
        S.run_global(op, step, ex, store)
        return ex.ds

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
        duplicates = find_duplicate_ids(shards, id_column)
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
            ds = plan.global_op(ds, op, step, FitStore(layout.fitted_dir(resume.run_dir)))
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
    return writer.write_from(shard, blocks)


def _task(fn):
    return ray.remote(fn).options(**RETRIES)


def _concat_refs(refs: list) -> pa.Table:
    return S.concat(ray.get(refs))


def _shuffle_reduce(side: list, key: str, fn, parts: int | None = None,
                    actor_fn=None, actors: int = 1) -> list:
    """Group side records by `key` and reduce each group with `fn` (a map-reduce shuffle
    in Ray tasks): every side block is split by key into P parts (default: one per CPU)
    and reducer p gets part p of every block, so each key lands in exactly one reducer.
    Side records are small (a key and a row per record); plain tasks on already-running
    workers cost less than a Ray Data sort, which started new workers for its
    sample/map/reduce phases (measured ~5 s of a 28 s run at 100k docs). With
    `actor_fn`, the reducers are `actors` actors built by it (stages that need `setup()`)."""
    if not side:
        return []
    parts = parts or max(1, min(len(side), int(ray.cluster_resources().get("CPU", 1))))
    if parts == 1 and actor_fn is None:
        return [_task(_reduce_parts).remote(fn, *side)]
    split = ray.remote(S.split_by_key).options(num_returns=parts, **RETRIES)
    pieces = [split.remote(block, key, parts) for block in side] if parts > 1 else None
    inputs = [[p[i] for p in pieces] if pieces else side for i in range(parts)]
    if actor_fn is None:
        return [_task(_reduce_parts).remote(fn, *part) for part in inputs]
    pool = [actor_fn() for _ in range(max(1, min(parts, actors)))]
    return [pool[i % len(pool)].reduce.remote(*part) for i, part in enumerate(inputs)]


def _reduce_parts(fn, *parts: pa.Table) -> pa.Table:
    return fn(_merge_parts(parts))


def _merge_parts(parts) -> pa.Table:
    return pa.concat_tables([p for p in parts if p.num_rows] or parts[:1],
                            promote_options="permissive")


def _actor_cpus(call: S.StageCall) -> float:
    cpus = call.stage.actor_cpus
    return ACTOR_CPUS if cpus is None else cpus


class StageActor:
    """A model-backed stage: the operator's `setup()` runs once, then every call."""

    def __init__(self, call: S.StageCall) -> None:
        self.call = call
        call.setup()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.call(batch)

    def reduce(self, *parts: pa.Table) -> pa.Table:
        return self.call(_merge_parts(parts))


class SharedValue:
    """A fitted value put in the object store once; fetched once per worker process."""

    _cache: dict[str, Any] = {}

    def __init__(self, value: Any) -> None:
        self.ref = ray.put(value)

    def get(self) -> Any:
        key = self.ref.hex()
        if key not in self._cache:
            self._cache[key] = ray.get(self.ref)
        return self._cache[key]


class RayStages:
    """`stages.Executor` on a Ray dataset: rows stay in their blocks; side records are
    task outputs; only a resolve gathers (side records and the rows they name)."""

    def __init__(self, plan: Plan, ds: ray.data.Dataset) -> None:
        self.plan, self.ds = plan, ds
        self.blocks: list = []
        self.side: list = []

    def map_rows(self, call: S.StageCall, actor: bool) -> None:
        if actor:
            self.ds = self.ds.map_batches(
                StageActor, fn_constructor_args=(call,), batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=self.plan.concurrency or 1),
                num_cpus=_actor_cpus(call), **ACTOR_RETRIES)
        else:
            self.ds = self.ds.map_batches(call, batch_format="pyarrow", **self.plan.tasks(),
                                          **RETRIES)

    def _materialize(self) -> None:
        self.ds = self.ds.materialize()  # rows are read again after the side records
        self.blocks = self.ds.to_arrow_refs()

    def emit(self, call: S.StageCall) -> None:
        self._materialize()
        self.side = [_task(_apply).remote(call, b) for b in self.blocks]

    def reduce(self, call: S.StageCall, key: str, actor: bool) -> None:
        parts = None
        if call.purpose == "groups":  # bound the projected rows one reducer holds
            size = sum(ray.get([_task(_nbytes).remote(b) for b in self.side]))
            parts = max(int(ray.cluster_resources().get("CPU", 1)),
                        math.ceil(size / S.GROUP_BYTES))
        make = (lambda: ray.remote(StageActor).options(
            num_cpus=_actor_cpus(call), **ACTOR_RETRIES).remote(call)) if actor else None
        self.side = _shuffle_reduce(self.side, key, call, parts, make,
                                    actors=self.plan.concurrency or 1)

    def gather_side(self) -> pa.Table:
        return _concat_refs(self.side)

    def select_rows(self, orders, columns: tuple[str, ...], prepare) -> pa.Table:
        shared = ray.put(orders)
        return _concat_refs([_task(S.select).remote(b, shared, columns, prepare)
                             for b in self.blocks])

    def attach(self, decisions: pa.Table) -> None:
        self.ds = self.ds.map_batches(S.attach, fn_kwargs={"decisions": decisions},
                                      batch_format="pyarrow", **RETRIES)

    def record_metrics(self, step: int, metrics: dict) -> None:
        # A step with several reporting stages (two grouped passes and a resolve) adds up.
        self.plan.metrics[step] = {**self.plan.metrics.get(step, {}), **metrics}

    def sample(self, columns: tuple[str, ...], n: int, seed: int) -> pa.Table:
        self._materialize()
        return S.merge_sample(ray.get(
            [_task(S.sample_candidates).remote(b, columns, n, seed) for b in self.blocks]), n)

    def share(self, value: Any) -> S.Value:
        return SharedValue(value)

    def driver_time(self, step: int, seconds: float) -> None:
        self.plan.driver_seconds[step] += seconds


def _apply(call: S.StageCall, block: pa.Table) -> pa.Table:
    return call(block)


def _nbytes(table: pa.Table) -> int:
    return table.nbytes
