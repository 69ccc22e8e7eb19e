"""`curate train-learner`: a two-tower SigLIP head on frozen embeddings of a pair set, saved
as a checkpoint that `select.jest` takes as its learner or reference head."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.cli_app import app, fail, out_console


@app.command("train-learner")
def train_learner_cmd(
    data: Annotated[str, typer.Argument(help="glob of pair files (.parquet/.jsonl)")],
    out: Annotated[Path, typer.Option("--out", help="where to save the head (.npz)")],
    left: Annotated[str, typer.Option("--left", help="left text column")] = "prompt",
    right: Annotated[str, typer.Option("--right", help="right text column")] = "answer",
    model: Annotated[str | None, typer.Option(
        metavar="DIR", help="local sentence-transformers directory (default: the packaged "
        "all-MiniLM-L6-v2)")] = None,
    backend: Annotated[str, typer.Option(help="embedding backend the head is trained on "
                                         "(and must later be used with)")] = "torch",
    dim: Annotated[int | None, typer.Option(min=1, help="output size of each tower "
                                            "(default: the embedding size)")] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2)] = 256,
    lr: Annotated[float, typer.Option(min=0.0, help="AdamW learning rate")] = 1e-3,
    test_fraction: Annotated[float, typer.Option(
        "--test-fraction", min=0.01, max=0.99, help="held out for recall@1")] = 0.1,
    seed: int = 0,
    threads: Annotated[int | None, typer.Option(min=1, help="encoder threads")] = None,
) -> None:
    """Train a JEST learner/reference head (algorithms.md 1.7) on frozen embeddings of the
    pairs; prints held-out recall@1 of the encoder alone and with the head."""
    if out.suffix != ".npz":
        fail(f"--out {out}: the checkpoint is an .npz file", code=2)
    from curate.train_learner import train_learner
    from operators.embed.backends import BACKENDS

    if backend not in BACKENDS:
        fail(f"unknown backend '{backend}' (one of {', '.join(BACKENDS)})", code=2)
    try:
        r = train_learner(data, out, left, right, model=model, backend=backend, dim=dim,
                          epochs=epochs, batch_size=batch_size, lr=lr,
                          test_fraction=test_fraction, seed=seed, threads=threads)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc), code=2)
    out_console.print(
        f"saved {out}: held-out recall@1 {r['recall_at_1_before']:.3f} -> "
        f"{r['recall_at_1_after']:.3f} (encoder alone -> with the head; {r['test']} test "
        f"pairs, {r['train']} train, {r['skipped']} skipped with an empty side; t="
        f"{r['scale']:.2f} b={r['bias']:.2f}; {r['steps']} steps, {r['seconds']}s)")
