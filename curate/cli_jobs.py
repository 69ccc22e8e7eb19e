"""Cluster commands: submit, status, logs, stop (Ray Jobs)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from curate.cli_app import (
    InputOpt,
    OutputOpt,
    SetOpt,
    app,
    fail,
    load,
    out_console,
    path_overrides,
)

Address = Annotated[str | None, typer.Option(
    "--address", help="Ray dashboard address (default: $RAY_ADDRESS or http://127.0.0.1:8265)")]
TokenFile = Annotated[Path | None, typer.Option(
    "--token-file", help="Ray auth token file (token auth); never printed")]


@contextmanager
def cluster_errors() -> Iterator[None]:
    """Exit with one `error:` line (1, or 2 for a bad argument) on a `jobs.JobsError`."""
    from curate.jobs import JobsError

    try:
        yield
    except JobsError as exc:
        fail(str(exc), exc.code)


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

    loaded = load(recipe, set_, path_overrides(input_, output))
    try:
        jobs.configure_auth(token_file)
        job_id = jobs.submit(loaded.raw, loaded.recipe.name, address)
    except jobs.JobsError as exc:
        fail(f"cannot submit: {exc}" if exc.code == 1 else str(exc), exc.code)
    out_console.print(f"submitted job [bold]{job_id}[/]")
    if wait:
        with cluster_errors():
            state = jobs.follow(job_id, address, lambda text: sys.stdout.write(text))
        out_console.print(f"job {job_id}: {state}")
        raise typer.Exit(0 if state == "SUCCEEDED" else 1)


@app.command()
def status(job_id: str, address: Address = None, token_file: TokenFile = None) -> None:
    """Print a submitted job's status (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
    from curate import jobs

    with cluster_errors():
        jobs.configure_auth(token_file)
        state = jobs.status(job_id, address)
    out_console.print(state)


@app.command()
def logs(job_id: str, address: Address = None, token_file: TokenFile = None,
         follow: Annotated[bool, typer.Option("--follow", "-f")] = False) -> None:
    """Print a submitted job's log; --follow streams it until the job ends."""
    from curate import jobs

    with cluster_errors():
        jobs.configure_auth(token_file)
        if follow:
            jobs.follow(job_id, address, lambda text: sys.stdout.write(text))
        else:
            sys.stdout.write(jobs.logs(job_id, address))


@app.command()
def stop(job_id: str, address: Address = None, token_file: TokenFile = None) -> None:
    """Stop a submitted job."""
    from curate import jobs

    with cluster_errors():
        jobs.configure_auth(token_file)
        stopped = jobs.stop(job_id, address)
    out_console.print(f"job {job_id}: {'stop requested' if stopped else 'already finished'}")
