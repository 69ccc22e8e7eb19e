"""`curate report`: one self-contained HTML file of what a run did."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.cli_app import app, fail, out_console


@app.command()
def report(
    out: Annotated[Path, typer.Argument(help="the output folder a recipe ran into")],
    run: Annotated[str | None, typer.Option(
        "--run", help="run id to report (default: the latest succeeded run)")] = None,
    compare: Annotated[tuple[str, str] | None, typer.Option(
        "--compare", help="two run ids, shown side by side per step", metavar="RUN_A RUN_B"
    )] = None,
    to: Annotated[Path | None, typer.Option(
        "--to", help="write the HTML here (default: the run's folder under OUT/_curate)")
    ] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="let --to replace an existing file")] = False,
) -> None:
    """Write an HTML report of a run: funnel with tokens, drops by reason, CPU seconds,
    signal histograms with thresholds, duplicate clusters and sample documents.

    One self-contained file (inline SVG charts, no script, nothing fetched), computed
    with DuckDB aggregates over the run's stats, so large runs report quickly.
    """
    from curate.cli_stats import check_target, write_file
    from curate.report import ReportError, build, default_path
    from pipelines import layout

    if run is not None and compare is not None:
        fail("give --run or --compare, not both", code=2)
    if to is not None:
        check_target(to, out, overwrite)
        target, root = to.resolve(), out.resolve()
        if root in target.parents:
            fail(f"--to {to} is inside {out}: the next run into it would refuse a file "
                 "curate did not publish; write the report elsewhere", code=2)
    if not layout.runs_dir(out).is_dir():
        fail(f"{out} is not a curate output folder (no {layout.runs_dir(out)}); give the "
             "output.path a recipe ran into", code=2)
    try:
        html, run_id, against = build(out, run, compare)
    except ReportError as exc:
        fail(str(exc), code=2)
    data = html.encode("utf-8")
    if to is None:
        to = default_path(out, run_id, against)
        overwrite = True  # curate's own file in its own folder: regenerated in place
    write_file(to, data, overwrite)
    out_console.print(f"report: {to} ({len(data) / 1000:,.0f} kB)", highlight=False,
                      soft_wrap=True)
