"""Finding input shards and checking them before any compute.

Checks here are cheap (Parquet footers, JSONL line counts) so a bad shard fails the
run in seconds, naming the file, instead of after an hour of work. JSONL may be
compressed (`x.jsonl.gz`, `.zst`, `.bz2`): the format comes from the inner extension.
"""

from __future__ import annotations

import glob
import io
import os
import re
from dataclasses import dataclass
from typing import BinaryIO, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import InputError

Format = Literal["parquet", "jsonl"]
_EXTENSIONS: dict[str, Format] = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
                                  ".json": "jsonl", ".ndjson": "jsonl"}
# Stream codecs pyarrow decompresses (`pa.input_stream`); only JSONL may be compressed
# this way: Parquet compresses inside the file, column by column.
_COMPRESSIONS = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2"}
# A line of only JSON whitespace (space, tab, CR) is blank: not a row.
_NON_BLANK = re.compile(rb"[^ \t\r\n]")
_BLANK_START = re.compile(rb"\n[\n \t\r]")
_BLANK_LINE = re.compile(rb"^[ \t\r]*\n", re.MULTILINE)


@dataclass(frozen=True)
class Shard:
    index: int
    path: str
    label: str  # short stable name used in generated ids: path relative to the glob root
    format: Format
    rows: int  # rows (Parquet) or non-blank lines (JSONL) the shard holds, known before reading
    has_id: bool
    blank_lines: int = 0  # blank JSONL lines, skipped: not rows, never in output or dropped
    compression: str | None = None  # stream codec of a compressed JSONL file (gzip, zstd, bz2)


# Not bz2's "BZh": text could start so; these bytes are not valid UTF-8 text.
_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}


def compression_of(path: str) -> str | None:
    """The stream codec named by the file's last extension, else the one its first bytes
    show (a JSON line cannot start with these), else None."""
    named = _COMPRESSIONS.get(os.path.splitext(path)[1].lower())
    if named is not None:
        return named
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return None
    return next((codec for magic, codec in _MAGIC.items() if head.startswith(magic)), None)


def _format_of(path: str, declared: str) -> Format:
    base, ext = os.path.splitext(path)
    compressed = ext.lower() in _COMPRESSIONS
    if compressed:
        ext = os.path.splitext(base)[1]  # x.jsonl.gz: the format is the inner extension
    fmt = declared if declared != "auto" else _EXTENSIONS.get(ext.lower())
    if fmt is None:
        raise InputError(f"{path}: cannot tell the format from extension '{ext}'; "
                         "set input.format to parquet or jsonl")
    if compressed and fmt == "parquet":
        raise InputError(f"{path}: a compressed Parquet file cannot be read; Parquet compresses "
                         "its own columns, so decompress it to a plain .parquet file")
    return fmt  # type: ignore[return-value]


def open_binary(path: str, compression: str | None) -> BinaryIO:
    """The file's bytes, decompressed when `compression` names a codec."""
    if compression is None:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    return io.BufferedReader(pa.input_stream(path, compression=compression), 1 << 20)


def count_lines(path: str, compression: str | None = None) -> tuple[int, int]:
    """(non-blank lines, blank lines) in a file, counting a final line without a newline.

    Streams 16 MB chunks without copying them: `bytes.count` for lines, and one regex
    scan for a newline followed by whitespace, the only place a blank line can start;
    only chunks where it finds one are searched line by line.
    """
    lines = blank = 0
    open_line, open_blank = False, True  # the line not yet ended: has bytes, all blank so far
    try:
        with open_binary(path, compression) as f:
            while chunk := f.read(1 << 24):
                first = chunk.find(b"\n")
                if first < 0:
                    open_line = True
                    open_blank = open_blank and not _NON_BLANK.search(chunk)
                    continue
                last = chunk.rfind(b"\n")
                lines += chunk.count(b"\n")
                blank += open_blank and not _NON_BLANK.search(chunk, 0, first)
                if _BLANK_START.search(chunk, first, last + 1):
                    blank += sum(1 for _ in _BLANK_LINE.finditer(chunk, first + 1, last + 1))
                open_line = last + 1 < len(chunk)
                open_blank = not _NON_BLANK.search(chunk, last + 1)
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        what = f"{compression} data" if compression else "file"
        raise InputError(f"{path}: the {what} cannot be read ({exc})") from None
    if open_line:
        lines += 1
        blank += open_blank
    return lines - blank, blank


def _check_parquet(path: str, text_column: str, id_column: str) -> tuple[int, bool]:
    try:
        meta = pq.read_metadata(path)
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        packed = compression_of(path)
        hint = f"; it is {packed}-compressed: Parquet cannot be, decompress it" if packed else ""
        raise InputError(f"{path}: not a readable Parquet file ({exc}){hint}") from None
    if text_column not in schema.names:
        raise InputError(f"{path}: no text column '{text_column}' (columns: {schema.names}); "
                         "set input.text_column")
    ttype = schema.field(text_column).type
    if not (pa.types.is_string(ttype) or pa.types.is_large_string(ttype)):
        raise InputError(f"{path}: text column '{text_column}' has type {ttype}, expected string")
    return meta.num_rows, id_column in schema.names


def matching_files(pattern: str) -> list[str]:
    """The files (not folders) `pattern` matches, `**` spanning folders, sorted by path."""
    return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))


def discover(pattern: str, declared_format: str, text_column: str, id_column: str) -> list[Shard]:
    """All shards matching `pattern`, sorted by path, each checked for readability."""
    paths = matching_files(pattern)
    if not paths:
        raise InputError(f"input.path '{pattern}' matches no files")
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    shards = []
    for i, path in enumerate(paths):
        fmt = _format_of(path, declared_format)
        compression, blank = None, 0
        if fmt == "parquet":
            rows, has_id = _check_parquet(path, text_column, id_column)
        else:
            compression = compression_of(path)
            (rows, blank), has_id = count_lines(path, compression), True
        label = os.path.relpath(os.path.abspath(path), root)
        shards.append(Shard(i, os.path.abspath(path), label, fmt, rows, has_id, blank,
                            compression))
    return shards
