"""Running a validated recipe end to end: plan, execute, account, publish, record."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from operators.base import Operator
from pipelines import checkpoints, layout, preflight
from pipelines import progress as P
from pipelines.accounting import funnel
from pipelines.errors import one_line, root_cause
from pipelines.fitted import FitStore
from pipelines.lock import output_lock
from pipelines.publish import finish_publish, publish
from pipelines.run_record import write_ops, write_run
from pipelines.spec import ExecutionSpec, RunSpec
from pipelines.writer import Recording, ShardWriter, StepInfo

TRACEBACK_NOTE = "full traceback: "  # the note a failed run adds to its exception
Progress = Callable[[P.RunProgress], None]


@dataclass
class RunResult:
    run_id: str
    output: Path
    ops: list[dict]
    seconds: float
    resumed_from: int = 0  # the checkpointed step this run continued after (0: none)
    # Per step: first batch start to last batch end (`pipelines.progress.wall_seconds`);
    # empty when the run was given no `progress` to report to.
    wall: dict[int, float] = field(default_factory=dict)


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def run(spec: RunSpec, operators: list[Operator], progress: Progress | None = None,
        log: Callable[[str], None] | None = None, interval: float = 0.5) -> RunResult:
    """Execute `spec` with `operators` (one per `spec.steps`) and write output and stats.

    An unfinished earlier run of the same work into the same OUT is resumed from its
    newest checkpoint (`pipelines.checkpoints`); `log` hears what was skipped.
    `progress` hears per-step counts every `interval` seconds while the run works
    (`pipelines.progress`); without it, no batch is counted.
    """
    inp, outp, ex, recipe_yaml = spec.input, spec.output, spec.execution, spec.recipe_yaml
    out = Path(outp.path).resolve()
    steps = [StepInfo(0, "input.read", "input")] + [
        StepInfo(i, op.name, name) for i, (op, name) in
        enumerate(zip(operators, spec.steps, strict=True), start=1)
    ]
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    shards = preflight.checked_shards(inp, out)
    blank = sum(s.blank_lines for s in shards)
    if log and blank:
        files = sum(1 for s in shards if s.blank_lines)
        log(f"skipped {blank:,} blank line(s) in {files} JSONL file(s); they are not rows")
    if log and not any(s.rows for s in shards):
        log(f"warning: the {len(shards)} input file(s) matching '{inp.path}' hold no rows; "
            "the output will be empty")
    engine = choose_engine(ex, shards)
    if log and engine == "inprocess" and ex.engine == "auto":
        log(f"running in this process ({sum(s.rows for s in shards):,} rows <= "
            f"execution.inprocess_max_rows={ex.inprocess_max_rows:,}; engine: ray forces Ray)")
    with output_lock(out):
        finish_publish(out)
        print_ = checkpoints.fingerprint(recipe_yaml, shards)
        resume = checkpoints.find_unfinished(layout.runs_dir(out), print_)
        if resume is None:
            resume = checkpoints.Resume(layout.runs_dir(out) / new_run_id())
            resume.run_dir.mkdir(parents=True)
            layout.fingerprint_file(resume.run_dir).write_text(print_)
        elif engine == "inprocess":
            resume = checkpoints.Resume(resume.run_dir)  # small: redone, not resumed
            if log:
                log(f"redoing unfinished run {resume.run_dir.name} from the start "
                    "(in-process runs keep no checkpoints)")
        elif log:
            done = ", ".join(s.name for s in steps[1:resume.step + 1]) or "none"
            log(f"resuming unfinished run {resume.run_dir.name}: completed steps skipped: "
                f"{done}; continuing from step {resume.step + 1}")
        run_dir, run_id = resume.run_dir, resume.run_dir.name
        # A killed run's partial output and its old error log.
        shutil.rmtree(layout.staging_dir(run_dir), ignore_errors=True)
        layout.error_log(run_dir).unlink(missing_ok=True)
        layout.recipe_file(run_dir).write_text(recipe_yaml, encoding="utf-8")
        status, error, ops = "failed", None, []
        try:
            writer = ShardWriter(shards, steps, run_id, str(run_dir), inp.id_column,
                                 outp.rows_per_shard, outp.compression, Recording.of(spec))
            with _executor(engine, ex, progress is not None) as (build, tally):
                poller = P.Poller(tally, [(s.name, s.op) for s in steps],
                                  sum(s.rows for s in shards), progress, interval)
                to_write = sum(1 for s in shards if s.rows)
                poller.written(0, to_write, 0)
                poller.start()
                try:
                    written, built = build(shards, operators, writer, inp, ex, resume)
                    summaries = []
                    for batch in written:
                        summaries.extend(batch.to_pylist())
                        poller.written(len(summaries), to_write,
                                       sum(s["kept"] for s in summaries))
                finally:
                    poller.stop()
                wall = P.wall_seconds(poller.counters)
            if blank:
                built.metrics.setdefault(0, {})["blank_lines"] = blank
            ops = funnel(shards, summaries, steps, built.driver_seconds, built.metrics)
            write_ops(run_dir, run_id, ops)
            publish(layout.staging_dir(run_dir), out, run_id)
            shutil.rmtree(layout.checkpoints_dir(run_dir), ignore_errors=True)
            status = "succeeded"
        except BaseException as exc:
            error = one_line(root_cause(exc))
            _record_failure(run_dir, exc)
            raise
        finally:
            try:
                write_run(run_dir, spec, run_id=run_id,
                          started=started, finished=datetime.now(UTC), status=status,
                          error=error, rows_in=ops[0]["rows_in"] if ops else None,
                          rows_out=ops[-1]["rows_out"] if ops else None,
                          resumed_from=resume.step)
            except OSError:
                if status == "succeeded":
                    raise
                # A failed run's record is best effort (the disk may be full); the error
                # being raised is what the user must see.
    return RunResult(run_id, out, ops, time.perf_counter() - t0, resume.step, wall)



def choose_engine(ex: ExecutionSpec, shards: list) -> str:
    """`ray` or `inprocess`. `auto` runs in this process when the run is local, its input
    holds at most `inprocess_max_rows` rows and this process is not already running Ray
    (then it is used): starting Ray costs ~5 s, more than a small input's work."""
    if ex.engine != "auto":
        return ex.engine
    ray = sys.modules.get("ray")
    if ex.address != "local" or (ray is not None and ray.is_initialized()):
        return "ray"
    return "inprocess" if sum(s.rows for s in shards) <= ex.inprocess_max_rows else "ray"


@contextlib.contextmanager
def _executor(engine: str, ex: ExecutionSpec, counted: bool
              ) -> Iterator[tuple[Callable, Callable[[], list[P.Counter]]]]:
    """A `build(shards, operators, writer, inp, ex, resume)` for the engine and the
    snapshot function of its progress tally (an empty one unless `counted`); Ray (and its
    import, ~2 s) only when the engine is Ray."""
    if engine == "inprocess":
        from pipelines import inprocess

        tally = P.Tally()
        with P.use(tally.add if counted else None):
            yield (lambda shards, ops, writer, inp, ex, resume: inprocess.build(
                shards, ops, writer, text_column=inp.text_column, id_column=inp.id_column,
                max_doc_bytes=inp.max_doc_bytes, batch_rows=inp.batch_rows,
                store=FitStore(layout.fitted_dir(resume.run_dir))), tally.snapshot)
        return
    from pipelines import plan
    from pipelines.ray_session import ray_session

    with ray_session(ex.address, ex.num_cpus, ex.object_store_mb):
        tally = P.RayTally() if counted else None
        yield (lambda shards, ops, writer, inp, ex, resume: plan.build(
            shards, ops, writer, text_column=inp.text_column, id_column=inp.id_column,
            max_doc_bytes=inp.max_doc_bytes, batch_rows=inp.batch_rows,
            concurrency=ex.concurrency, resume=resume), tally.snapshot if tally else list)


def _record_failure(run_dir: Path, exc: BaseException) -> None:
    """Keep the traceback in the run's error.log (named in a note on `exc`) and free the
    space of the unpublished output. Best effort: the failure may be a full disk."""
    shutil.rmtree(layout.staging_dir(run_dir), ignore_errors=True)
    log_path = layout.error_log(run_dir)
    try:
        log_path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    except OSError:
        return
    exc.add_note(f"{TRACEBACK_NOTE}{log_path}")
