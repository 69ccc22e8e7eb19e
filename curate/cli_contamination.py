"""`curate contamination OUT`: which benchmark items leaked into the corpus, and how.

Two sandboxed queries over the `benchmark_items` and `contamination` views (docs/stats.md,
"Contamination") of the latest succeeded run of each recipe in OUT, merging the recipe's
decontam steps (an n-gram and an embedding step count a row once): per benchmark (items
checked, items leaked, rows flagged and dropped, methods, steps) and per item (leaked or
not, rows, the methods that found it and each one's best score). A benchmark checked only
by `index: bloom` steps cannot tell items apart: its items show `leaked` empty.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from curate.cli_app import app, fail, out_console
from curate.cli_stats import Format, _render, _table

# The decontam steps of each latest run, with the benchmarks they checked; a benchmark
# that only Bloom-filter steps checked has no per-item answer (null `leaked`).
_STEPS = """
steps AS (
  SELECT i.run_id, i.benchmark, r.recipe,
         string_agg(DISTINCT o.name, ',' ORDER BY o.name) AS steps,
         bool_and(coalesce(json_extract_string(o.metrics, '$.method') = 'bloom', false))
           AS bloom_only
  FROM (SELECT DISTINCT run_id, step, benchmark FROM benchmark_items) i
  JOIN ops o USING (run_id, step) JOIN runs r USING (run_id) GROUP BY ALL)"""

# Per (recipe, benchmark, item), over all its decontam steps: rows flagged (distinct ids),
# the methods that found it and each method's best score.
ITEMS_SQL = """
WITH""" + _STEPS + """,
per_method AS (
  SELECT run_id, benchmark, matched_id, method, max(score) AS score
  FROM contamination WHERE matched_id IS NOT NULL GROUP BY ALL),
hits AS (
  SELECT c.run_id, c.benchmark, c.matched_id, count(DISTINCT c.id) AS rows,
         any_value(m.methods) AS methods, any_value(m.scores) AS scores
  FROM contamination c JOIN (
    SELECT run_id, benchmark, matched_id,
           string_agg(method, ',' ORDER BY method) AS methods,
           string_agg(method || '=' || round(score, 3), ' ' ORDER BY method) AS scores
    FROM per_method GROUP BY ALL) m USING (run_id, benchmark, matched_id)
  GROUP BY ALL)
SELECT s.recipe, i.benchmark, i.item_id,
       CASE WHEN h.rows IS NOT NULL THEN true WHEN s.bloom_only THEN NULL ELSE false END
         AS leaked,
       coalesce(h.rows, 0) AS rows, h.methods, h.scores
FROM (SELECT DISTINCT run_id, benchmark, item_id FROM benchmark_items) i
JOIN steps s USING (run_id, benchmark)
LEFT JOIN hits h ON h.run_id = i.run_id AND h.benchmark = i.benchmark
                AND h.matched_id = i.item_id
{where}
ORDER BY s.recipe, i.benchmark, leaked DESC NULLS LAST, rows DESC, i.item_id
"""

# Per (recipe, benchmark): items checked and leaked, rows flagged and dropped.
BENCHMARKS_SQL = """
WITH""" + _STEPS + """,
items AS (SELECT run_id, benchmark, count(DISTINCT item_id) AS items FROM benchmark_items
          GROUP BY ALL),
flagged AS (
  SELECT run_id, benchmark, count(DISTINCT id) AS rows_flagged,
         count(DISTINCT matched_id) AS items_leaked,
         count(DISTINCT id) FILTER (WHERE dropped) AS rows_dropped,
         string_agg(DISTINCT method, ',' ORDER BY method) AS methods
  FROM contamination GROUP BY ALL)
SELECT s.recipe, benchmark, i.items,
       CASE WHEN s.bloom_only THEN NULL ELSE coalesce(f.items_leaked, 0) END AS items_leaked,
       coalesce(f.rows_flagged, 0) AS rows_flagged, coalesce(f.rows_dropped, 0) AS rows_dropped,
       f.methods, s.steps
FROM items i JOIN steps s USING (run_id, benchmark)
LEFT JOIN flagged f USING (run_id, benchmark)
ORDER BY s.recipe, benchmark
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
