"""Writing one input shard's rows: output shards, dropped rows, removed texts and signals.

Called with *every* row of one or more input shards (the pipeline hands one task the
blocks that hold a shard's rows), so it can prove nothing was lost or duplicated before
it writes anything.
Files are written to a temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from pipelines import columns as C
from pipelines import layout, tokens
from pipelines.errors import AccountingError
from pipelines.shards import Shard
from pipelines.spec import KeepRemoved, RunSpec
from pipelines.tables import DROPPED_SCHEMA, REMOVED_SCHEMA, SIGNALS_SCHEMA


@dataclass(frozen=True)
class StepInfo:
    index: int
    op: str
    name: str


@dataclass(frozen=True)
class Recording:
    """What the writer records besides the rows' fate: removed rows' texts, text sizes."""

    text_column: str = "text"
    keep_removed: KeepRemoved = "sample"
    removed_per_reason: int = 20
    seed: int = 0
    tokenizer: str = tokens.NONE

    @classmethod
    def of(cls, spec: RunSpec) -> Recording:
        return cls(spec.input.text_column, spec.output.keep_removed,
                   spec.output.removed_per_reason, spec.execution.seed,
                   spec.execution.tokenizer)


def atomic_write(table: pa.Table, path: Path, compression: str = "zstd") -> None:
    """Write `table` to `path` via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table.replace_schema_metadata(None), tmp,
                       compression=None if compression == "none" else compression)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class ShardWriter:
    """Callable on a table of rows: writes each input shard found in it."""

    def __init__(self, shards: list[Shard], steps: list[StepInfo], run_id: str, run_dir: str,
                 id_column: str, rows_per_shard: int, compression: str,
                 recording: Recording = Recording()) -> None:
        self.shards = {s.index: s for s in shards}
        self.steps = steps
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.id_column = id_column
        self.rows_per_shard = rows_per_shard
        self.compression = compression
        self.recording = recording

    def __call__(self, batch: pa.Table) -> pa.Table:
        summaries = []
        shard_ids = batch[C.SHARD].to_numpy()
        for shard in np.unique(shard_ids):
            rows = batch.filter(pa.array(shard_ids == shard))
            summaries.append(self.write(self.shards[int(shard)], rows))
        return pa.concat_tables(summaries) if summaries else summary_table([])

    def write_from(self, shard: int, tables) -> pa.Table:
        """Write input shard `shard` from every table that may hold some of its rows."""
        return self(pa.concat_tables([t.filter(pc.equal(t[C.SHARD], shard)) for t in tables],
                                     promote_options="permissive"))

    def write(self, shard: Shard, rows: pa.Table) -> pa.Table:
        rows = rows.sort_by(C.ORDER)
        order = rows[C.ORDER].to_numpy()
        unique = np.unique(order).size
        if unique != rows.num_rows or rows.num_rows != shard.rows:
            raise AccountingError(
                f"{shard.path}: {shard.rows} rows in the input but {rows.num_rows} reached the "
                f"writer ({rows.num_rows - unique} duplicated); refusing to write"
            )
        drop_step = rows[C.DROP_STEP]
        kept = rows.filter(pc.is_null(drop_step))
        self._write_output(shard, kept)
        ids = pc.cast(rows[self.id_column], pa.string())
        self._write_dropped(shard, rows, ids)
        self._write_removed(shard, rows, ids)
        self._write_signals(shard, rows, ids)

        steps = np.asarray(pc.fill_null(drop_step, -1).to_numpy(zero_copy_only=False))
        dropped_per_step = [int((steps == s.index).sum()) for s in self.steps]
        seconds = []
        for s in self.steps:
            col = C.seconds_column(s.index)
            seconds.append(float(pc.sum(rows[col]).as_py() or 0.0)
                           if col in rows.column_names else 0.0)
        return summary_table([(shard.index, rows.num_rows, kept.num_rows, dropped_per_step,
                               seconds, *self._sizes(rows, steps))])

    def _sizes(self, rows: pa.Table, drop_step: np.ndarray
               ) -> tuple[int | None, list[int], list[int], list[int] | None]:
        """(tokens of every row, then per step the UTF-8 bytes, words and tokens of the
        rows it kept). Each row's text is measured once, as it reaches the writer (a kept
        row's output text, a dropped row's text when dropped), and counts for every step
        it survived: a row dropped at step k is in the output of steps 0..k-1."""
        rec = self.recording
        text = (rows[rec.text_column] if rec.text_column in rows.column_names
                else pa.nulls(rows.num_rows, pa.string()))
        survived = np.where(drop_step < 0, len(self.steps), drop_step)
        per_step = [_out_per_step(tokens.utf8_bytes(text), survived, len(self.steps)),
                    _out_per_step(tokens.words(text), survived, len(self.steps))]
        if rec.tokenizer == tokens.NONE:
            return None, *per_step, None
        counts = tokens.tokens(text, rec.tokenizer)
        return (int(counts.sum()), *per_step,
                _out_per_step(counts, survived, len(self.steps)))

    def _write_output(self, shard: Shard, kept: pa.Table) -> None:
        user = kept.drop_columns([c for c in kept.column_names if C.is_internal(c)])
        staging = layout.staging_dir(self.run_dir)
        for k, start in enumerate(range(0, user.num_rows, self.rows_per_shard)):
            part = user.slice(start, self.rows_per_shard)
            atomic_write(part, staging / layout.output_shard_name(shard.index, k),
                         self.compression)

    def _drop_records(self, gone: pa.Table, ids: pa.Array) -> dict[str, pa.Array]:
        """The columns `dropped` and `removed` share, for dropped rows `gone`."""
        step = gone[C.DROP_STEP].to_numpy()
        return {
            "run_id": pa.array([self.run_id] * gone.num_rows, pa.string()),
            "step": gone[C.DROP_STEP],
            "op": self._lookup(step, "op"),
            "name": self._lookup(step, "name"),
            "id": ids,
            "reason": gone[C.REASON],
            "detail": gone[C.DETAIL],
        }

    def _write_dropped(self, shard: Shard, rows: pa.Table, ids: pa.Array) -> None:
        mask = pc.is_valid(rows[C.DROP_STEP])
        table = pa.table(self._drop_records(rows.filter(mask), ids.filter(mask)),
                         schema=DROPPED_SCHEMA)
        atomic_write(table, layout.dropped_file(self.run_dir, shard.index))

    def _write_removed(self, shard: Shard, rows: pa.Table, ids: pa.Array) -> None:
        rec = self.recording
        if rec.keep_removed == "none":
            return
        mask = pc.is_valid(rows[C.DROP_STEP])
        gone, gone_ids = rows.filter(mask), ids.filter(mask)
        if rec.keep_removed == "sample":
            pick = pa.array(sample_per_group(gone[C.DROP_STEP], gone[C.REASON], gone_ids,
                                             rec.removed_per_reason, rec.seed))
            gone, gone_ids = gone.take(pick), gone_ids.take(pick)
        text = (pc.cast(gone[rec.text_column], pa.string())
                if rec.text_column in gone.column_names else pa.nulls(gone.num_rows, pa.string()))
        table = pa.table({**self._drop_records(gone, gone_ids), "text": text},
                         schema=REMOVED_SCHEMA)
        atomic_write(table, layout.removed_file(self.run_dir, shard.index))

    def _write_signals(self, shard: Shard, rows: pa.Table, ids: pa.Array) -> None:
        parts = []
        for name in rows.column_names:
            parsed = C.parse_signal_column(name)
            if parsed is None:
                continue
            step, key = parsed
            values = rows[name]
            mask = pc.is_valid(values)
            n = int(pc.sum(mask).as_py() or 0)
            is_num = pa.types.is_floating(values.type)
            info = self.steps[step]
            parts.append(pa.table({
                "run_id": pa.array([self.run_id] * n, pa.string()),
                "step": pa.array(np.full(n, step, np.int16)),
                "op": pa.array([info.op] * n, pa.string()),
                "name": pa.array([info.name] * n, pa.string()),
                "id": ids.filter(mask),
                "key": pa.array([key] * n, pa.string()),
                "num": values.filter(mask) if is_num else pa.nulls(n, pa.float64()),
                "text": pa.nulls(n, pa.string()) if is_num else values.filter(mask),
            }, schema=SIGNALS_SCHEMA))
        table = pa.concat_tables(parts) if parts else SIGNALS_SCHEMA.empty_table()
        atomic_write(table, layout.signals_file(self.run_dir, shard.index))

    def _lookup(self, step: np.ndarray, field: str) -> pa.Array:
        names = np.array([getattr(s, field) for s in self.steps], dtype=object)
        return pa.array(names[step.astype(np.int64)] if step.size else [], pa.string())


def id_hashes(ids: pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """xxh3-64 of each id's UTF-8 bytes seeded by `seed` (a null id hashes as empty)."""
    digest, seed = xxhash.xxh3_64_intdigest, seed & 0xFFFF_FFFF_FFFF_FFFF
    raw = pc.cast(ids, pa.string()).to_pylist()
    return np.fromiter((digest((i or "").encode(), seed) for i in raw), np.uint64,
                       count=len(raw))


def sample_per_group(step: pa.ChunkedArray, reason: pa.ChunkedArray, ids: pa.Array,
                     n: int, seed: int) -> np.ndarray:
    """Ascending indices of the `n` rows with the smallest `id_hashes` in each (step, reason).

    It depends only on the rows' ids, never on how they were split into blocks, so both
    engines and a resumed run pick the same rows; ties keep input order (stable sort).
    """
    if not len(ids):
        return np.zeros(0, np.int64)
    codes = pc.dictionary_encode(pc.fill_null(reason, "")).combine_chunks().indices
    group = np.asarray(step.to_numpy(), np.int64) << 32 | codes.to_numpy().astype(np.int64)
    perm = np.lexsort((id_hashes(ids, seed), group))
    sorted_group = group[perm]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    rank = np.arange(len(perm)) - np.repeat(starts, np.diff(np.r_[starts, len(perm)]))
    return np.sort(perm[rank < n])


def _out_per_step(sizes: np.ndarray, survived: np.ndarray, steps: int) -> list[int]:
    """Per step s, the sum of `sizes` over rows whose drop step is after s (`survived`:
    the drop step, or `steps` for a kept row)."""
    lost = np.bincount(survived, weights=sizes, minlength=steps + 1)[:steps]
    return (int(sizes.sum()) - np.rint(np.cumsum(lost)).astype(np.int64)).tolist()


SUMMARY_SCHEMA = pa.schema([
    ("shard", pa.int32()), ("rows", pa.int64()), ("kept", pa.int64()),
    ("dropped", pa.list_(pa.int64())), ("seconds", pa.list_(pa.float64())),
    ("tokens", pa.int64()), ("bytes_out", pa.list_(pa.int64())),
    ("words_out", pa.list_(pa.int64())), ("tokens_out", pa.list_(pa.int64())),
])


def summary_table(rows: list[tuple]) -> pa.Table:
    return pa.Table.from_pylist(
        [dict(zip(SUMMARY_SCHEMA.names, r, strict=True)) for r in rows], schema=SUMMARY_SCHEMA
    )
