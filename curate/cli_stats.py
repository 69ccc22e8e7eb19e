"""`curate stats`: DuckDB SQL over a run folder's stats tables, in a read-only sandbox."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer
from rich.console import Console
from rich.table import Table

from curate.cli_app import app, fail, out_console
from pipelines import layout


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


@app.command()
def stats(
    out: Path,
    sql: Annotated[str, typer.Argument(
        help="one SELECT (or EXPLAIN [ANALYZE] SELECT) over runs, ops, signals, dropped "
        "(latest succeeded run of each recipe) or all_runs, all_ops, all_signals, all_dropped "
        "(every run, failed and unfinished ones included)")],
    format_: Annotated[Format, typer.Option("--format", "-f", help="output format")] = Format.table,
    to: Annotated[Path | None, typer.Option(
        "--to", help="write to this file instead of stdout (not inside OUT/_curate)")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="let --to replace an existing file")] = False,
    memory_limit: Annotated[str, typer.Option(
        "--memory-limit", help="DuckDB memory limit; also caps the result's size")] = "1GB",
    threads: Annotated[int, typer.Option("--threads", help="DuckDB threads")] = 2,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="stop the query after this many seconds")] = 60.0,
) -> None:
    """Query run stats with DuckDB SQL in a read-only sandbox (see docs/stats.md).

    `runs`, `ops`, `signals`, `dropped`, `fitted` show the latest succeeded run of each
    recipe name; `all_runs`, `all_ops`, `all_signals`, `all_dropped`, `all_fitted` show
    every run in OUT, including failed runs and the partial files of unfinished ones.
    Only a single SELECT (or EXPLAIN [ANALYZE] of one) is accepted; queries read nothing
    but these views, use no network or extensions, and are stopped at --memory-limit,
    --threads and --timeout.
    """
    from curate.stats import Limits, StatsError, query

    if to is not None:
        check_target(to, out, overwrite)
    try:
        result = query(out, sql, Limits(memory=memory_limit, threads=threads, timeout=timeout))
    except StatsError as exc:
        fail(str(exc), code=2)
    if format_ is Format.parquet:
        import pyarrow.parquet as pq

        if to is None:
            if sys.stdout.isatty():
                fail("parquet output is binary: give --to FILE or redirect stdout", code=2)
            pq.write_table(result, sys.stdout.buffer)
            return
        buf = io.BytesIO()
        pq.write_table(result, buf)
        write_file(to, buf.getvalue(), overwrite)
        return
    if to is not None:
        write_file(to, _render(result, format_).encode("utf-8"), overwrite)
    elif format_ is Format.table:
        out_console.print(_table(result))
    else:
        sys.stdout.write(_render(result, format_))


def check_target(to: Path, out: Path, overwrite: bool) -> None:
    """Refuse a --to that would clobber a file or write into curate's own folder."""
    target, own = to.resolve(), layout.curate_dir(out).resolve()
    if target == own or own in target.parents:
        fail(f"--to {to} is inside {out}/_curate, which only curate writes", code=2)
    if target.is_dir():
        fail(f"--to {to} is a directory; give a file name", code=2)
    if not target.parent.is_dir():
        fail(f"--to {to}: folder {to.parent} does not exist", code=2)
    if target.exists() and not overwrite:
        fail(f"--to {to} exists; give --overwrite to replace it", code=2)


def write_file(to: Path, data: bytes, overwrite: bool) -> None:
    """Write `data` to `to`; without --overwrite never over a file, even one that appeared
    since the check (exclusive create); with it, via a temporary file and a rename."""
    try:
        if not overwrite:
            with to.open("xb") as f:
                try:
                    f.write(data)
                except BaseException:
                    to.unlink(missing_ok=True)  # ours: created just now
                    raise
            return
        tmp = to.with_name(f".{to.name}.tmp-{os.getpid()}")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, to)
        finally:
            tmp.unlink(missing_ok=True)
    except FileExistsError:
        fail(f"--to {to} exists; give --overwrite to replace it", code=2)
    except OSError as exc:
        fail(f"cannot write --to {to}: {exc.strerror or exc}", code=2)


def _table(result: pa.Table) -> Table:
    table = Table()
    for c in result.column_names:
        table.add_column(c)
    for r in result.to_pylist():
        table.add_row(*["" if r[c] is None else str(r[c]) for c in result.column_names])
    return table


def _render(result: pa.Table, format_: Format) -> str:
    """`result` as csv, json, or a table drawn as uncoloured text."""
    rows = result.to_pylist()
    if format_ is Format.csv:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(result.column_names)
        writer.writerows([[r[c] for c in result.column_names] for r in rows])
        return buf.getvalue()
    if format_ is Format.json:
        return json.dumps(rows, default=str, indent=None) + "\n"
    buf = io.StringIO()
    # A wide console so a file's rows are never wrapped; no colour codes in a file.
    Console(file=buf, width=100_000, color_system=None, force_terminal=False,
            soft_wrap=False).print(_table(result))
    return buf.getvalue()
