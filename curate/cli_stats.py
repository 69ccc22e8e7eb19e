"""`curate stats`: DuckDB SQL over a run folder's stats tables."""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curate.cli_app import app, fail, out_console


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


@app.command()
def stats(
    out: Path,
    sql: Annotated[str, typer.Argument(help="one SELECT over runs, ops, signals, dropped")],
    format_: Annotated[Format, typer.Option("--format", "-f", help="output format")] = Format.table,
    to: Annotated[Path | None, typer.Option(
        "--to", help="write to this file instead of stdout")] = None,
) -> None:
    """Query a run's stats with DuckDB SQL (read-only). Views: runs, ops, signals, dropped."""
    from curate.stats import StatsError, query

    try:
        result = query(out, sql)
    except StatsError as exc:
        fail(str(exc), code=2)
    if format_ is Format.parquet:
        import pyarrow.parquet as pq

        if to is None and sys.stdout.isatty():
            fail("parquet output is binary: give --to FILE or redirect stdout", code=2)
        pq.write_table(result, to if to else sys.stdout.buffer)
        return
    text = _render(result, format_)
    if to:
        to.write_text(text, encoding="utf-8")
    elif format_ is Format.table:
        out_console.print(text)
    else:
        sys.stdout.write(text)


def _render(result, format_: Format):
    rows = result.to_pylist()
    if format_ is Format.csv:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(result.column_names)
        writer.writerows([[r[c] for c in result.column_names] for r in rows])
        return buf.getvalue()
    if format_ is Format.json:
        return json.dumps(rows, default=str, indent=None) + "\n"
    table = Table()
    for c in result.column_names:
        table.add_column(c)
    for r in rows:
        table.add_row(*["" if r[c] is None else str(r[c]) for c in result.column_names])
    return table


