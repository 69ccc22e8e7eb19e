"""`curate report`: one self-contained HTML file of what a run (or two runs) did.

Figures come from `curate.report_data` (DuckDB aggregates over the stats views), charts
from `curate.report_charts` (matplotlib, inline SVG), the page from `curate.report_html`.
"""

from __future__ import annotations

from pathlib import Path

from curate.report_data import ReportError, gather, open_stats, resolve_run
from curate.report_html import compare_page, run_page
from pipelines import layout

__all__ = ["ReportError", "build", "default_path"]


def default_path(out: Path, run_id: str, against: str | None = None) -> Path:
    """Where the report goes without --to: inside curate's own folder of OUT (a file in
    OUT itself would make the next run refuse OUT as holding files curate did not write)."""
    run_dir = layout.runs_dir(out) / run_id
    return run_dir / ("report.html" if against is None else f"compare-{against}.html")


def build(out: Path, run: str | None = None, compare: tuple[str, str] | None = None
          ) -> tuple[str, str, str | None]:
    """The report's HTML for `run` (default: the latest succeeded run of OUT), or for the
    two runs of `compare`; returns (html, run id, the run compared against or None)."""
    con = open_stats(out)
    try:
        if compare is not None:
            ida, idb = (resolve_run(con, out, r) for r in compare)
            if ida == idb:
                raise ReportError(f"--compare needs two different runs (got {ida} twice)")
            html = compare_page(gather(con, out, ida), gather(con, out, idb))
            return html, idb, ida
        run_id = resolve_run(con, out, run)
        return run_page(gather(con, out, run_id)), run_id, None
    finally:
        con.close()
