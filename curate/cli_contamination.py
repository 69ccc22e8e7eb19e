"""`curate contamination OUT`: which benchmark items leaked into the corpus, and how.

Two sandboxed queries over the `benchmark_items` and `contamination` views (docs/stats.md,
"Contamination") of the latest succeeded run of each recipe in OUT: per benchmark
(items checked, items leaked, rows flagged, methods) and per item (leaked or not, rows,
methods, best score). A step with `index: bloom` cannot tell items apart: its items
show `leaked` empty, its benchmark line still counts the rows.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from curate.cli_app import app, fail, out_console
from curate.cli_stats import Format, _render, _table

# Per (step, benchmark, item): flagged rows, methods and best score; bloom steps' items
# are unknown (null `leaked`).
ITEMS_SQL = """
WITH hits AS (
  SELECT run_id, step, benchmark, matched_id, count(*) AS rows,
         string_agg(DISTINCT method, ',' ORDER BY method) AS methods, max(score) AS score
  FROM contamination WHERE matched_id IS NOT NULL GROUP BY ALL),
steps AS (
  SELECT run_id, step, name,
         coalesce(json_extract_string(metrics, '$.method') = 'bloom', false) AS bloom
  FROM ops)
SELECT i.step, s.name AS step_name, i.benchmark, i.item_id,
       CASE WHEN s.bloom THEN NULL ELSE h.rows IS NOT NULL END AS leaked,
       coalesce(h.rows, 0) AS rows, h.methods, round(h.score, 4) AS score
FROM benchmark_items i
LEFT JOIN steps s USING (run_id, step)
LEFT JOIN hits h ON h.run_id = i.run_id AND h.step = i.step AND h.benchmark = i.benchmark
                AND h.matched_id = i.item_id
{where}
ORDER BY i.step, i.benchmark, leaked DESC NULLS LAST, rows DESC, i.item_id
"""

BENCHMARKS_SQL = """
WITH items AS (
  SELECT run_id, step, benchmark, count(*) AS items FROM benchmark_items GROUP BY ALL),
flagged AS (
  SELECT run_id, step, benchmark, count(*) AS rows_flagged,
         count(DISTINCT matched_id) AS items_leaked,
         count(*) FILTER (WHERE dropped) AS rows_dropped,
         string_agg(DISTINCT method, ',' ORDER BY method) AS methods
  FROM contamination GROUP BY ALL)
SELECT step, o.name AS step_name, benchmark, coalesce(i.items, 0) AS items,
       CASE WHEN json_extract_string(o.metrics, '$.method') = 'bloom' THEN NULL
            ELSE coalesce(f.items_leaked, 0) END AS items_leaked,
       coalesce(f.rows_flagged, 0) AS rows_flagged, coalesce(f.rows_dropped, 0) AS rows_dropped,
       f.methods
FROM items i FULL JOIN flagged f USING (run_id, step, benchmark)
LEFT JOIN ops o USING (run_id, step)
ORDER BY step, benchmark
"""


class By(StrEnum):
    item = "item"
    benchmark = "benchmark"


class Items(StrEnum):
    all = "all"
    leaked = "leaked"


@app.command()
def contamination(
    out: Path,
    items: Annotated[Items, typer.Option(
        "--items", help="list every item checked, or only the leaked ones")] = Items.all,
    by: Annotated[By, typer.Option(
        "--by", help="with csv/json: one row per item or per benchmark")] = By.item,
    format_: Annotated[Format, typer.Option("--format", "-f", help="table, csv or json")
                       ] = Format.table,
) -> None:
    """Per benchmark and per item: leaked or not, into how many rows, by which method.

    Reads the latest succeeded run of each recipe in OUT (its decontam.* steps); the same
    tables come from `curate stats` over the `benchmark_items` and `contamination` views.
    """
    from curate.stats import StatsError, query

    if format_ is Format.parquet:
        fail("contamination prints table, csv or json; use `curate stats` for parquet", code=2)
    where = "WHERE h.rows IS NOT NULL" if items is Items.leaked else ""
    try:
        per_item = query(out, ITEMS_SQL.format(where=where))
        per_bench = query(out, BENCHMARKS_SQL)
    except StatsError as exc:
        fail(str(exc), code=2)
    if per_bench.num_rows == 0:
        fail(f"{out}: no decontam.* step in the latest succeeded runs", code=1)
    if format_ is not Format.table:
        sys.stdout.write(_render(per_item if by is By.item else per_bench, format_))
        return
    out_console.print(_table(per_bench))
    out_console.print(_table(per_item))
