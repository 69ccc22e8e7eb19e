"""Finding input shards and checking them before any compute.

Checks here are cheap (Parquet footers, JSONL line counts) so a bad shard fails the
run in seconds, naming the file, instead of after an hour of work.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import InputError

Format = Literal["parquet", "jsonl"]
_EXTENSIONS: dict[str, Format] = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
                                  ".json": "jsonl", ".ndjson": "jsonl"}


@dataclass(frozen=True)
class Shard:
    index: int
    path: str
    label: str  # short stable name used in generated ids: path relative to the glob root
    format: Format
    rows: int  # rows (Parquet) or lines (JSONL) the shard holds, known before reading
    has_id: bool


def _format_of(path: str, declared: str) -> Format:
    if declared != "auto":
        return declared  # type: ignore[return-value]
    ext = os.path.splitext(path)[1].lower()
    if ext not in _EXTENSIONS:
        raise InputError(f"{path}: cannot tell the format from extension '{ext}'; "
                         "set input.format to parquet or jsonl")
    return _EXTENSIONS[ext]


def count_lines(path: str) -> int:
    """Lines in a file, counting a final line without a newline."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def _check_parquet(path: str, text_column: str, id_column: str) -> tuple[int, bool]:
    try:
        meta = pq.read_metadata(path)
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    if text_column not in schema.names:
        raise InputError(f"{path}: no text column '{text_column}' (columns: {schema.names}); "
                         "set input.text_column")
    ttype = schema.field(text_column).type
    if not (pa.types.is_string(ttype) or pa.types.is_large_string(ttype)):
        raise InputError(f"{path}: text column '{text_column}' has type {ttype}, expected string")
    return meta.num_rows, id_column in schema.names


def discover(pattern: str, declared_format: str, text_column: str, id_column: str) -> list[Shard]:
    """All shards matching `pattern`, sorted by path, each checked for readability."""
    paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not paths:
        raise InputError(f"input.path '{pattern}' matches no files")
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    shards = []
    for i, path in enumerate(paths):
        fmt = _format_of(path, declared_format)
        if fmt == "parquet":
            rows, has_id = _check_parquet(path, text_column, id_column)
        else:
            rows, has_id = count_lines(path), True
        label = os.path.relpath(os.path.abspath(path), root)
        shards.append(Shard(i, os.path.abspath(path), label, fmt, rows, has_id))
    return shards
