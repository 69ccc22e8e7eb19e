"""The `curate` Typer app, its consoles and the options several commands share."""

from __future__ import annotations

import os
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    help="Declarative data curation pipelines on Ray. Start with `curate run "
    "recipes/quickstart.yaml`, then `curate stats out/quickstart \"SELECT * FROM ops\"`.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)


def _console(stderr: bool = False) -> Console:
    """A console; writing to a pipe or a CI log (no terminal, no COLUMNS), 160 columns
    instead of rich's 80, so the funnel's numbers are not cut."""
    if Console(stderr=stderr).is_terminal or "COLUMNS" in os.environ:
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=160)


out_console = _console()
err = _console(stderr=True)

SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="override a recipe value: steps.NAME.params.KEY=VALUE (repeatable)")]
InputOpt = Annotated[str | None, typer.Option("--input", help="input glob (overrides input.path)")]
OutputOpt = Annotated[str | None, typer.Option(
    "--output", help="output dir (overrides output.path)")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `error: MESSAGE` on stderr and exit with `code` (no traceback)."""
    err.print("[bold red]error:[/]", escape(message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def path_overrides(input_: str | None, output: str | None) -> list[str]:
    return ([f"input.path={input_}"] if input_ else []) + (
        [f"output.path={output}"] if output else [])


def load(recipe, sets: list[str] | None, extra: list[str] | None = None):
    """Load and validate a recipe, or exit 2 listing every problem with its line."""
    from curate.recipe import RecipeError, load_recipe

    try:
        return load_recipe(recipe, [*(extra or []), *(sets or [])])
    except RecipeError as exc:
        fail(f"recipe {recipe} is invalid:\n" + "\n".join(
            f"  {exc.source}:{p}" for p in exc.problems), code=2)
