"""Benchmark sets as input to the `decontam.*` operators: load, check, cache.

A benchmark set is one or more Parquet or JSONL files (paths or globs, named by the
recipe) with an id column, a benchmark column and the text columns that matter
(question, answer, choices, code). An item's text is its text columns joined with "\n"
in the given order; a null or empty field is skipped, a list field (e.g. multiple-choice
`choices`) contributes its elements one per line.

Refused with a `BenchmarkFileError` naming the file and row (rows count from 0 as the
reader's quarantine details do; JSONL also names the physical line): a pattern that
matches no file, an unreadable file, a missing id or text column, a null id, a null or
empty benchmark name, an item whose joined text is empty, and an id seen twice within
one benchmark (in one file or across files; two benchmarks may reuse an id, the pair
(benchmark, id) names an item). A file without the benchmark column is one benchmark
named after the file's stem (`gsm8k.parquet` -> `gsm8k`). The error is raised in the
operator's constructor, so `curate validate` reports it at the step's line.

Loading is cached per process on the patterns, columns and each matched file's
(path, size, mtime), so the constructor's check, the fit stage and a second decontam
step reading the same files load them once.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from operators.base import Params
from pipelines.errors import CurateError

# A decontam operator's `fit` stage of this name returns `items_table(items)`; the engine
# records it as `fitted/step-NNN-items.table.parquet`, which `curate stats` shows as the
# `benchmark_items` view, so a run lists every item it checked, leaked or not.
ITEMS_STAGE = "items"
SIGNAL_KEYS = {"benchmark": "text", "matched_id": "text", "method": "text", "score": "num",
               "span_start": "num", "span_end": "num"}
REASON = "contaminated"

_PARQUET = (".parquet", ".pq")
_JSONL = (".jsonl", ".ndjson", ".json")


class BenchmarkFileError(CurateError, ValueError):
    """A benchmark file that cannot be used; the message names the file and row."""


@dataclass(frozen=True)
class BenchmarkItems:
    """Every item of the benchmark files, in file order (files sorted per pattern)."""

    ids: list[str]
    benchmarks: list[str]
    texts: list[str]   # the item's text_columns joined with "\n" (null/empty fields skipped)
    files: list[str]   # the file each item came from
    rows: list[int]    # its row in that file (0-based)

    def __len__(self) -> int:
        return len(self.ids)


class DecontamParams(Params):
    """Parameters every `decontam.*` operator shares (so recipes stay portable)."""

    benchmarks: list[str] = Field(min_length=1, description="benchmark files (Parquet or "
                                  "JSONL), paths or globs; each must match a file")
    id_column: str = Field("id", description="benchmark column holding each item's id "
                           "(unique within its benchmark)")
    text_columns: list[str] = Field(["text"], min_length=1, description="benchmark columns "
                                    "whose text is matched (e.g. question, answer, choices, "
                                    "code), joined with newlines in this order")
    benchmark_column: str = Field("benchmark", description="benchmark column naming each "
                                  "item's benchmark; a file without it is one benchmark "
                                  "named after the file's stem")
    action: Literal["drop", "annotate"] = Field("drop", description="drop flagged rows "
                                                "(reason 'contaminated'), or keep them with "
                                                "the signals")


def items_table(items: BenchmarkItems) -> pa.Table:
    """The items a run checked (not their text): benchmark, item_id, file, row."""
    return pa.table({"benchmark": pa.array(items.benchmarks, pa.string()),
                     "item_id": pa.array(items.ids, pa.string()),
                     "file": pa.array(items.files, pa.string()),
                     "row": pa.array(items.rows, pa.int64())})


def expand(patterns: Sequence[str]) -> list[str]:
    """The files the patterns name, each pattern's matches sorted, duplicates once."""
    files: list[str] = []
    for pattern in patterns:
        path = os.path.expanduser(pattern)
        matched = sorted(glob.glob(path, recursive=True)) if glob.has_magic(path) else (
            [path] if os.path.exists(path) else [])
        matched = [m for m in matched if os.path.isfile(m)]
        if not matched:
            what = "matches no file" if glob.has_magic(path) else "does not exist"
            raise BenchmarkFileError(f"benchmarks: '{pattern}' {what}")
        files.extend(m for m in matched if m not in files)
    return files


_CACHE: dict[tuple, BenchmarkItems] = {}
_CACHE_MAX = 8


def load_benchmark_items(patterns: Sequence[str], id_column: str,
                         text_columns: Sequence[str], benchmark_column: str = "benchmark"
                         ) -> BenchmarkItems:
    """Load and check every item of the benchmark files (see the module doc)."""
    if not text_columns:
        raise BenchmarkFileError("benchmarks: text_columns is empty")
    files = expand(patterns)
    key = (tuple(files), id_column, tuple(text_columns), benchmark_column,
           tuple(_stamp(f) for f in files))
    if key in _CACHE:
        return _CACHE[key]
    ids: list[str] = []
    benches: list[str] = []
    texts: list[str] = []
    where: list[str] = []
    rows: list[int] = []
    seen: dict[tuple[str, str], str] = {}
    for path in files:
        for row, at, item_id, bench, text in _file_items(path, id_column, text_columns,
                                                          benchmark_column):
            if (bench, item_id) in seen:
                raise BenchmarkFileError(f"{at}: duplicate id {item_id!r} in benchmark "
                                         f"{bench!r} (first at {seen[bench, item_id]})")
            seen[bench, item_id] = at
            ids.append(item_id)
            benches.append(bench)
            texts.append(text)
            where.append(path)
            rows.append(row)
    items = BenchmarkItems(ids, benches, texts, where, rows)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = items
    return items


def _stamp(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _file_items(path: str, id_column: str, text_columns: Sequence[str],
                benchmark_column: str):
    """(row, 'FILE row R', id, benchmark, text) of each row of one file, checked."""
    records, lines = _read(path, id_column, text_columns, benchmark_column)
    if not records:
        raise BenchmarkFileError(f"{path}: no rows")
    stem = Path(path).name.split(".")[0]
    named = any(benchmark_column in r for r in records)
    for row, record in enumerate(records):
        at = f"{path} row {row}" + (f": line {lines[row]}" if lines is not None else "")
        item_id = record.get(id_column)
        if item_id is None or (isinstance(item_id, str) and not item_id.strip()):
            raise BenchmarkFileError(f"{at}: id ('{id_column}') is null or empty")
        bench = record.get(benchmark_column) if named else stem
        if bench is None or not str(bench).strip():
            raise BenchmarkFileError(f"{at}: benchmark ('{benchmark_column}') is null or "
                                     "empty")
        parts = [p for c in text_columns for p in _field_text(record.get(c))]
        text = "\n".join(parts)
        if not text.strip():
            raise BenchmarkFileError(f"{at}: item {str(item_id)!r} has no text (columns "
                                     f"{', '.join(text_columns)} are null or empty)")
        yield row, at, str(item_id), str(bench), text


def _field_text(value: Any) -> list[str]:
    """One field's contribution to the item text: nothing for null/empty, list elements
    one per line, anything else as a string."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [p for v in value for p in _field_text(v)]
    text = value if isinstance(value, str) else (
        json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else str(value))
    return [text] if text.strip() else []


def _read(path: str, id_column: str, text_columns: Sequence[str], benchmark_column: str
          ) -> tuple[list[dict], list[int] | None]:
    """The rows of one file as dicts of the needed columns, and (JSONL) their lines."""
    needed = [id_column, *dict.fromkeys(text_columns)]
    lower = path.lower()
    if lower.endswith(_PARQUET):
        try:
            schema = pq.read_schema(path)
            have = [c for c in (*needed, benchmark_column) if c in schema.names]
            missing = [c for c in needed if c not in schema.names]
            if missing:
                raise BenchmarkFileError(
                    f"{path}: no column {', '.join(map(repr, missing))} (columns: "
                    f"{', '.join(schema.names)})")
            table = pq.read_table(path, columns=list(dict.fromkeys(have)))
        except (OSError, pa.ArrowException) as exc:
            raise BenchmarkFileError(f"{path}: not a readable Parquet file ({exc})") from None
        return table.to_pylist(), None
    if lower.endswith(_JSONL):
        return _read_jsonl(path, needed)
    raise BenchmarkFileError(f"{path}: unknown benchmark file type (use .parquet or .jsonl)")


def _read_jsonl(path: str, needed: Sequence[str]) -> tuple[list[dict], list[int]]:
    records: list[dict] = []
    lines: list[int] = []
    present: set[str] = set()
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue  # blank lines are not rows (as the reader counts them)
                at = f"{path} row {len(records)}: line {number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BenchmarkFileError(f"{at}: invalid JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise BenchmarkFileError(f"{at}: not a JSON object")
                present.update(k for k in needed if k in record)
                records.append(record)
                lines.append(number)
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchmarkFileError(f"{path}: not a readable JSONL file ({exc})") from None
    missing = [c for c in needed if c not in present]
    if missing or not records:
        what = (f"no column {', '.join(map(repr, missing))} in any row" if records
                else "no rows")
        raise BenchmarkFileError(f"{path}: {what}")
    return records, lines
