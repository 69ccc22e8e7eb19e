"""The `curate` command line: run, validate, ops, sample, train-quality.

`stats` lives in `curate.cli_stats`, the cluster commands in `curate.cli_jobs`; both
register on the same app.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from curate.cli_app import (
    InputOpt,
    OutputOpt,
    SetOpt,
    app,
    err,
    fail,
    load,
    out_console,
    path_overrides,
)


@app.command()
def validate(recipe: Path, input_: InputOpt = None, output: OutputOpt = None,
             set_: SetOpt = None) -> None:
    """Check a recipe without running it: schema, ops, parameters, and for local runs the
    input (the glob matches readable shards) and the output folder (safe to write)."""
    loaded = load(recipe, set_, path_overrides(input_, output))
    spec = loaded.recipe
    if spec.execution.address == "local":
        _check_paths(loaded)
        where = f"; input and output checked ({spec.input.path} -> {spec.output.path})"
    else:
        where = f"; paths not checked here (they are read on {spec.execution.address})"
    steps = ", ".join(f"{s.name} ({s.op})" for s in spec.steps)
    out_console.print(f"[green]ok[/] {recipe}: {len(spec.steps)} steps: {steps}{escape(where)}")


def _check_paths(loaded) -> None:
    from pipelines import preflight
    from pipelines.errors import CurateError

    run = loaded.run_spec()
    try:
        preflight.checked_shards(run.input, Path(run.output.path))
    except CurateError as exc:
        fail(str(exc), code=2)


@app.command()
def run(recipe: Path, input_: InputOpt = None, output: OutputOpt = None,
        set_: SetOpt = None) -> None:
    """Run a recipe: locally on an embedded Ray, or on `execution.address`.

    Ctrl-C stops the run; rerunning the same command resumes it from its last checkpoint.
    """
    from curate.run_display import RunDisplay, funnel_table
    from pipelines.errors import CurateError, one_line, root_cause
    from pipelines.runner import TRACEBACK_NOTE
    from pipelines.runner import run as run_recipe

    loaded = load(recipe, set_, path_overrides(input_, output))
    with RunDisplay(err) as live:
        try:
            result = run_recipe(loaded.run_spec(), loaded.operators, progress=live,
                                log=lambda message: err.print(escape(message)))
        except KeyboardInterrupt:
            live.stop()
            err.print("[bold red]error:[/] interrupted; rerun the same command to resume")
            sys.stderr.flush()
            sys.stdout.flush()
            # The run is recorded and Ray shut down by now; interpreter teardown after an
            # interrupt can still crash in Ray's threads (seen: SIGSEGV instead of 130).
            os._exit(130)
        except Exception as exc:  # noqa: BLE001 - shown to the user without a traceback
            cause = root_cause(exc)
            notes = [n for n in getattr(exc, "__notes__", []) if n.startswith(TRACEBACK_NOTE)]
            hint = f" ({notes[0]})" if notes and not isinstance(cause, CurateError) else ""
            live.stop()
            fail(f"run failed: {one_line(cause)}{hint}")
    out_console.print(funnel_table(result.ops, result.wall))
    out_console.print(
        f"[green]done[/] in {result.seconds:.1f}s: run {result.run_id} -> {result.output}\n"
        f"ask why: curate stats {result.output} \"SELECT reason, count(*) FROM dropped GROUP BY 1\""
    )


@app.command()
def ops(name: Annotated[str | None, typer.Argument(help="an op, e.g. dedup.exact")] = None) -> None:
    """List the operators, or show one operator's parameters, signals and drop reasons."""
    from curate.catalogue import describe, summary
    from operators.registry import UnknownOperator

    try:
        out_console.print(describe(name) if name else summary())
    except UnknownOperator as exc:
        fail(str(exc), code=2)


@app.command()
def sample(
    dest: Annotated[Path, typer.Argument(help="file to write (.parquet or .jsonl)")],
    rows: Annotated[int, typer.Option("-n", "--rows", min=1, help="how many rows")] = 1000,
) -> None:
    """Write N rows of the bundled sample corpus (Python docs sections) to start from."""
    from curate.samples import write_sample

    try:
        n = write_sample(dest, rows)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc), code=2)
    out_console.print(f"wrote {n} rows to {dest}")


@app.command("train-quality")
def train_quality_cmd(
    positive: Annotated[str, typer.Option(
        "--positive", help="glob of good texts (.parquet/.jsonl)")],
    negative: Annotated[str, typer.Option("--negative", help="glob of bad texts")],
    out: Annotated[Path, typer.Option("--out", help="where to save MODEL")],
    text_column: Annotated[str, typer.Option("--text-column")] = "text",
    test_fraction: Annotated[float, typer.Option(
        "--test-fraction", min=0.01, max=0.99, help="held out for the reported metrics")] = 0.2,
    seed: int = 0,
) -> None:
    """Train a quality classifier for `quality.classifier`; prints held-out accuracy and AUC."""
    from curate.train_quality import train_quality

    try:
        report = train_quality(positive, negative, str(out), text_column,
                               test_fraction=test_fraction, seed=seed)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc), code=2)
    out_console.print(
        f"saved {out}: held-out accuracy {report['accuracy']:.3f}, AUC {report['auc']:.3f} "
        f"(test: {report['n_test']['positive']} positive, {report['n_test']['negative']} "
        f"negative; {report['seconds']}s)")



from curate import (  # noqa: E402,F401  (register their commands)
    cli_contamination,
    cli_embed,
    cli_inspect,
    cli_jobs,
    cli_report,
    cli_stats,
    cli_train_learner,
)

if __name__ == "__main__":
    app()
