"""`curate embed prepare`: build the offline artefacts of the embedding backends ahead of a
run (otherwise each is built on first use, inside the run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from curate.cli_app import app, fail, out_console

embed_app = typer.Typer(help="Embedding backends: build their artefacts ahead of a run.",
                        no_args_is_help=True)
app.add_typer(embed_app, name="embed")


@embed_app.command()
def prepare(
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", "-b", metavar="BACKEND", help="backend to build (repeatable; default: "
        "every backend that has an artefact; `curate ops embed` describes them)")] = None,
    model: Annotated[str | None, typer.Option(
        metavar="DIR", help="local sentence-transformers directory (default: the packaged "
        "all-MiniLM-L6-v2)")] = None,
    out: Annotated[Path | None, typer.Option(
        metavar="DIR", help="artefact directory, for one backend (default: the user cache, "
        "where `embed` looks)")] = None,
    threads: Annotated[int | None, typer.Option(min=1, metavar="N", help="build threads")] = None,
    force: Annotated[bool, typer.Option("--force", help="rebuild even if up to date")] = False,
) -> None:
    """Build each backend's artefact from the local model, offline, and check it against
    torch; an up-to-date artefact is reused."""
    # Imported here: the embed operator's modules would slow every `curate` start.
    from operators.embed.backends import (
        BUILT,
        default_artefact_dir,
        prepare_backend,
        read_manifest,
        resolve_model,
    )

    names = backend or list(BUILT)
    unknown = [b for b in names if b not in BUILT]
    if unknown:
        fail(f"no artefact to build for backend '{unknown[0]}' (backends with one: "
             f"{', '.join(BUILT)})", code=2)
    if out is not None and len(names) > 1:
        fail("--out takes one --backend (each backend needs its own directory)", code=2)
    try:
        resolve_model(model)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc), code=2)
    for name in names:
        target = out if out is not None else default_artefact_dir(model, name)
        before = (read_manifest(target) or {}).get("built_at")
        path = prepare_backend(model, name, target, threads=threads, force=force)
        manifest = read_manifest(path) or {}
        built = force or before != manifest.get("built_at")
        state = f"built in {manifest.get('built_seconds')} s" if built else "up to date"
        out_console.print(f"{name}: {state}: {escape(str(path))}\n"
                          f"  check cosine to torch: {_cosines(manifest)}",
                          highlight=False, soft_wrap=True)


def _cosines(manifest: dict) -> str:
    """The build's checks against torch on its check sentences, labelled by precision where
    the backend has several (`check_cosine`, `check_cosine_int8`)."""
    parts = []
    for key, value in sorted(manifest.items()):
        if key == "check_cosine":
            label = manifest.get("inference_precision")
        elif key.startswith("check_cosine_"):
            label = key.removeprefix("check_cosine_")
        else:
            continue
        parts.append(f"{value} ({label})" if label else str(value))
    return ", ".join(parts) or "none recorded"
