"""Running a validated recipe end to end: plan, execute, account, publish, record."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from operators.base import Operator
from pipelines import checkpoints, plan
from pipelines.accounting import funnel
from pipelines.lock import output_lock
from pipelines.ray_session import ray_session
from pipelines.run_record import write_ops, write_run
from pipelines.shards import discover
from pipelines.writer import ShardWriter, StepInfo

Progress = Callable[[int, int, int], None]  # (shards_done, shards_total, rows_kept_so_far)


@dataclass
class RunResult:
    run_id: str
    output: Path
    ops: list[dict]
    seconds: float
    resumed_from: int = 0  # the checkpointed step this run continued after (0: none)


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def run(recipe, operators: list[Operator], recipe_yaml: str,
        progress: Progress | None = None, log: Callable[[str], None] | None = None) -> RunResult:
    """Execute `recipe` (a validated `curate.recipe.Recipe`) and write output and stats.

    An unfinished earlier run of the same work into the same OUT is resumed from its
    newest checkpoint (`pipelines.checkpoints`); `log` hears what was skipped.
    """
    inp, outp, ex = recipe.input, recipe.output, recipe.execution
    out = Path(outp.path).resolve()
    steps = [StepInfo(0, "input.read", "input")] + [
        StepInfo(i, op.name, spec.name) for i, (op, spec) in
        enumerate(zip(operators, recipe.steps, strict=True), start=1)
    ]
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    with output_lock(out):
        finish_publish(out)
        shards = discover(inp.path, inp.format, inp.text_column, inp.id_column)
        print_ = checkpoints.fingerprint(recipe_yaml, shards)
        resume = checkpoints.find_unfinished(out / "_curate" / "runs", print_)
        if resume is None:
            resume = checkpoints.Resume(out / "_curate" / "runs" / new_run_id())
            resume.run_dir.mkdir(parents=True)
            (resume.run_dir / "fingerprint").write_text(print_)
        elif log:
            done = ", ".join(s.name for s in steps[1:resume.step + 1]) or "none"
            log(f"resuming unfinished run {resume.run_dir.name}: completed steps skipped: "
                f"{done}; continuing from step {resume.step + 1}")
        run_dir, run_id = resume.run_dir, resume.run_dir.name
        shutil.rmtree(run_dir / "staging", ignore_errors=True)  # a killed run's partial output
        (run_dir / "recipe.yaml").write_text(recipe_yaml, encoding="utf-8")
        status, error, ops = "failed", None, []
        try:
            with ray_session(ex.address, ex.num_cpus, ex.object_store_mb):
                writer = ShardWriter(shards, steps, run_id, str(run_dir), inp.id_column,
                                     outp.rows_per_shard, outp.compression)
                written, built = plan.build(
                    shards, operators, writer, text_column=inp.text_column,
                    id_column=inp.id_column, max_doc_bytes=inp.max_doc_bytes,
                    batch_rows=inp.batch_rows, concurrency=ex.concurrency, resume=resume)
                summaries = []
                for batch in written:
                    summaries.extend(batch.to_pylist())
                    if progress:
                        progress(len(summaries), sum(1 for s in shards if s.rows),
                                 sum(s["kept"] for s in summaries))
            ops = funnel(shards, summaries, steps, built.driver_seconds, built.metrics)
            write_ops(run_dir, run_id, ops)
            publish(run_dir / "staging", out)
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
            status = "succeeded"
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            write_run(run_dir, run_id=run_id, recipe=recipe, recipe_yaml=recipe_yaml,
                      started=started, finished=datetime.now(UTC), status=status, error=error,
                      rows_in=ops[0]["rows_in"] if ops else None,
                      rows_out=ops[-1]["rows_out"] if ops else None,
                      resumed_from=resume.step)
    return RunResult(run_id, out, ops, time.perf_counter() - t0, resume.step)


def publish(staging: Path, out: Path) -> None:
    """Replace the previous run's output shards with this run's, crash-safely.

    A marker names the run being published; if the process dies half-way, the next run
    into OUT finishes this publish first (`finish_publish`), so OUT never stays a mix
    of two runs' shards.
    """
    marker = out / "_curate" / "publishing"
    marker.write_text(str(staging))
    finish_publish(out)


def finish_publish(out: Path) -> None:
    """Complete an interrupted publish, if one is recorded."""
    marker = out / "_curate" / "publishing"
    if not marker.is_file():
        return
    staging = Path(marker.read_text())
    if staging.exists():
        new = {p.name for p in staging.glob("part-*.parquet")}
        for old in out.glob("part-*.parquet"):
            if old.name not in new:
                old.unlink()
        for part in sorted(staging.glob("part-*.parquet")):
            os.replace(part, out / part.name)
        shutil.rmtree(staging)
    marker.unlink()
