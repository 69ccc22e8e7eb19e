"""The `curate` command line: run, validate, ops, stats, sample."""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from curate.recipe import RecipeError, load_recipe

app = typer.Typer(
    help="Declarative data curation pipelines on Ray. Start with `curate run "
    "recipes/quickstart.yaml`, then `curate stats out/quickstart \"SELECT * FROM ops\"`.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
out_console = Console()
err = Console(stderr=True)

SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="override a recipe value: steps.NAME.params.KEY=VALUE (repeatable)")]
InputOpt = Annotated[str | None, typer.Option("--input", help="input glob (overrides input.path)")]
OutputOpt = Annotated[str | None, typer.Option(
    "--output", help="output dir (overrides output.path)")]


def _path_overrides(input_: str | None, output: str | None) -> list[str]:
    return ([f"input.path={input_}"] if input_ else []) + (
        [f"output.path={output}"] if output else [])


def _fail(message: str, code: int = 1) -> None:
    err.print("[bold red]error:[/]", escape(message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _load(recipe: Path, sets: list[str] | None, extra: list[str] | None = None):
    try:
        return load_recipe(recipe, [*(extra or []), *(sets or [])])
    except RecipeError as exc:
        _fail(f"recipe {recipe} is invalid:\n" + "\n".join(
            f"  {exc.source}:{p}" for p in exc.problems), code=2)


@app.command()
def validate(recipe: Path, set_: SetOpt = None) -> None:
    """Check a recipe (schema, ops, parameter types and bounds) without running it."""
    loaded = _load(recipe, set_)
    steps = ", ".join(f"{s.name} ({s.op})" for s in loaded.recipe.steps)
    out_console.print(f"[green]ok[/] {recipe}: {len(loaded.recipe.steps)} steps: {steps}")


@app.command()
def run(recipe: Path, input_: InputOpt = None, output: OutputOpt = None,
        set_: SetOpt = None) -> None:
    """Run a recipe: locally on an embedded Ray, or on `execution.address`."""
    from pipelines.errors import root_cause
    from pipelines.runner import run as run_recipe

    loaded = _load(recipe, set_, _path_overrides(input_, output))
    resolved = yaml.safe_dump(loaded.raw, sort_keys=False)
    with _progress() as report:
        try:
            result = run_recipe(loaded.recipe, loaded.operators, resolved, progress=report,
                                log=lambda message: err.print(escape(message)))
        except Exception as exc:  # noqa: BLE001 - shown to the user without a traceback
            cause = root_cause(exc)
            _fail(f"run failed: {cause}")
    _print_funnel(result.ops)
    out_console.print(
        f"[green]done[/] in {result.seconds:.1f}s: run {result.run_id} -> {result.output}\n"
        f"ask why: curate stats {result.output} \"SELECT reason, count(*) FROM dropped GROUP BY 1\""
    )


class _progress:
    """A live line: elapsed time, shards written, rows kept."""

    def __enter__(self):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("shards"), TimeElapsedColumn(),
                            console=err, transient=False)
        self.bar.start()
        self.task = self.bar.add_task("reading, transforming (shards are written last)",
                                      total=None)
        return self.update

    def update(self, done: int, total: int, kept: int) -> None:
        self.bar.update(self.task, completed=done, total=total,
                        description=f"writing shards, {kept:,} rows kept")

    def __exit__(self, *exc) -> None:
        self.bar.stop()


def _print_funnel(ops: list[dict]) -> None:
    table = Table(title="funnel", title_justify="left")
    for col in ("step", "name", "op", "in", "out", "dropped", "cpu s"):
        numeric = col not in ("name", "op")
        table.add_column(col, justify="right" if numeric else "left")
    for r in ops:
        table.add_row(str(r["step"]), r["name"], r["op"], f"{r['rows_in']:,}",
                      f"{r['rows_out']:,}", f"{r['rows_dropped']:,}", f"{r['seconds']:.2f}")
    out_console.print(table)


@app.command()
def ops(name: Annotated[str | None, typer.Argument(help="an op, e.g. dedup.exact")] = None) -> None:
    """List the operators, or show one operator's parameters, signals and drop reasons."""
    from curate.catalogue import describe, summary
    from operators.registry import UnknownOperator

    try:
        out_console.print(describe(name) if name else summary())
    except UnknownOperator as exc:
        _fail(str(exc), code=2)


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
        _fail(str(exc), code=2)
    if format_ is Format.parquet:
        import pyarrow.parquet as pq

        if to is None and sys.stdout.isatty():
            _fail("parquet output is binary: give --to FILE or redirect stdout", code=2)
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
        _fail(str(exc), code=2)
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
        _fail(str(exc), code=2)
    out_console.print(
        f"saved {out}: held-out accuracy {report['accuracy']:.3f}, AUC {report['auc']:.3f} "
        f"(test: {report['n_test']['positive']} positive, {report['n_test']['negative']} "
        f"negative; {report['seconds']}s)")


Address = Annotated[str | None, typer.Option(
    "--address", help="Ray dashboard address (default: $RAY_ADDRESS or http://127.0.0.1:8265)")]
TokenFile = Annotated[Path | None, typer.Option(
    "--token-file", help="Ray auth token file (token auth); never printed")]


@app.command()
def submit(
    recipe: Path,
    address: Address = None,
    input_: InputOpt = None,
    output: OutputOpt = None,
    set_: SetOpt = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="stream the job's log and exit with its status")] = False,
    token_file: TokenFile = None,
) -> None:
    """Submit a recipe as a Ray job on a cluster (validated here first)."""
    from curate import jobs

    loaded = _load(recipe, set_, _path_overrides(input_, output))
    try:
        jobs.configure_auth(token_file)
        job_id = jobs.submit(loaded.raw, loaded.recipe.name, address)
    except Exception as exc:  # noqa: BLE001 - connection and auth errors, shown plainly
        _fail(f"cannot submit to {address or 'the cluster'}: {exc}")
    out_console.print(f"submitted job [bold]{job_id}[/]")
    if wait:
        state = jobs.follow(job_id, address, lambda text: sys.stdout.write(text))
        out_console.print(f"job {job_id}: {state}")
        raise typer.Exit(0 if state == "SUCCEEDED" else 1)


@app.command()
def status(job_id: str, address: Address = None, token_file: TokenFile = None) -> None:
    """Print a submitted job's status (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
    from curate import jobs

    jobs.configure_auth(token_file)
    out_console.print(jobs.status(job_id, address))


@app.command()
def logs(job_id: str, address: Address = None, token_file: TokenFile = None,
         follow: Annotated[bool, typer.Option("--follow", "-f")] = False) -> None:
    """Print a submitted job's log; --follow streams it until the job ends."""
    from curate import jobs

    jobs.configure_auth(token_file)
    if follow:
        jobs.follow(job_id, address, lambda text: sys.stdout.write(text))
    else:
        sys.stdout.write(jobs.logs(job_id, address))


@app.command()
def stop(job_id: str, address: Address = None, token_file: TokenFile = None) -> None:
    """Stop a submitted job."""
    from curate import jobs

    jobs.configure_auth(token_file)
    stopped = jobs.stop(job_id, address)
    out_console.print(f"job {job_id}: {'stop requested' if stopped else 'already finished'}")


if __name__ == "__main__":
    app()
