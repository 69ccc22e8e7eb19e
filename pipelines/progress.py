"""Live per-step progress of a run: workers report per-batch counts, the driver renders.

Every batch a stage processes is reported once (never per row) as (step, stage, rows
in, rows out, start, end) to a sink: in this process a `Tally`; on Ray a `Tally` held
by one small named actor per Ray job (`actor_name`), which workers find by name and
call without waiting for an answer (`.remote()`, the result ignored). The driver polls
the tally (`Poller`) and turns its counters into `StepView`s: rows in and out, docs/s,
ETA, wall time.

These counts are a display, not the accounting: a Ray task re-run after its worker died
reports its batches again. The funnel (`pipelines.accounting`) stays the truth.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from pipelines import columns as C

ROWS, RECORDS, SAMPLE = "rows", "records", "sample"  # what a stage's counts count
LOOKUP_RETRY_S = 5.0  # a worker that found no tally actor looks again after this long

Sink = Callable[[int, str, int, int | None, float, float, str], None]
Counter = tuple[int, str, str, int, int | None, int, float, float]
"""One stage's counters: step, stage, unit, rows in, rows out (None: not reported),
batches, first batch start, last batch end (Unix seconds)."""


class Tally:
    """Per (step, stage) counters of reported batches, in the order stages first report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[int, str], list] = {}

    def add(self, step: int, stage: str, rows_in: int, rows_out: int | None,
            start: float, end: float, unit: str = ROWS) -> None:
        with self._lock:
            c = self._counters.get((step, stage))
            if c is None:
                self._counters[(step, stage)] = [unit, rows_in, rows_out, 1, start, end]
                return
            c[1] += rows_in
            c[2] = rows_out if c[2] is None else c[2] + (rows_out or 0)
            c[3] += 1
            c[4], c[5] = min(c[4], start), max(c[5], end)

    def reset(self) -> None:
        with self._lock:
            self._counters.clear()

    def snapshot(self) -> list[Counter]:
        with self._lock:
            return [(step, stage, *c) for (step, stage), c in self._counters.items()]


# ---- reporting (any process) ------------------------------------------------------------

_local: Sink | None = None
_found: dict[str, tuple[object | None, float]] = {}  # Ray job id -> (actor or None, looked at)


def report(step: int, stage: str, rows_in: int, rows_out: int | None, start: float,
           end: float, unit: str = ROWS) -> None:
    """Count one batch of `stage` of step `step`; a no-op when no run listens."""
    sink = _local or _ray_sink()
    if sink is not None:
        sink(step, stage, rows_in, rows_out, start, end, unit)


@contextlib.contextmanager
def use(sink: Sink | None) -> Iterator[None]:
    """Send this process's reports to `sink` (the in-process engine's `Tally.add`)."""
    global _local
    previous, _local = _local, sink
    try:
        yield
    finally:
        _local = previous


def reported_reads(batches: Iterable[pa.Table]) -> Iterator[pa.Table]:
    """`batches` from the reader, each reported as step 0 (rows read in, live rows out)."""
    start = time.time()
    for batch in batches:
        report(0, "", batch.num_rows, batch[C.DROP_STEP].null_count, start, time.time())
        yield batch
        start = time.time()


def live_rows(table: pa.Table) -> int:
    """Rows of `table` no step dropped (Ray Data's empty blocks carry no columns)."""
    return table[C.DROP_STEP].null_count if C.DROP_STEP in table.column_names else 0


def actor_name(job_id: str) -> str:
    return f"curate-progress-{job_id}"


def _ray_sink() -> Sink | None:
    """The tally actor of this Ray job, when this process runs Ray work and one exists.

    Looked up by name once per process (again after `LOOKUP_RETRY_S` when absent), so a
    worker needs no setup and a run without progress costs a lookup, not a call a batch.
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    job = ray.get_runtime_context().get_job_id()
    actor, looked = _found.get(job, (None, 0.0))
    if actor is None and time.monotonic() - looked > LOOKUP_RETRY_S:
        try:
            actor = ray.get_actor(actor_name(job))
        except ValueError:
            actor = None
        _found[job] = (actor, time.monotonic())
    return None if actor is None else actor.add.remote


class RayTally:
    """The driver's side of the tally actor of this Ray job (created here, polled here).

    The actor lives as long as the job (Ray ends it with the driver) and is reset by
    each run: killing it after a run would leave workers of a later run in the same job
    holding a dead handle they found by name.
    """

    def __init__(self) -> None:
        import ray

        name = actor_name(ray.get_runtime_context().get_job_id())
        # num_cpus=0: it must never wait for, or take, a slot the run's tasks need.
        self.actor = ray.remote(num_cpus=0)(Tally).options(name=name,
                                                            get_if_exists=True).remote()
        ray.get(self.actor.reset.remote())
        self._ray = ray

    def snapshot(self) -> list[Counter]:
        return self._ray.get(self.actor.snapshot.remote(), timeout=30)


# ---- what the driver shows ---------------------------------------------------------------

@dataclass(frozen=True)
class StepView:
    """One step as the live display shows it.

    `rows_in`: rows the step has seen (its row-level stage that saw most); `rows_out`:
    rows its last stage kept (None until that stage reports); `stage`/`stage_done`: the
    stage that reported last and its count (`unit`: rows, side records or a fit's
    sample); `rate`: that stage's docs/s; `eta`: seconds until it has seen the rows
    expected (None: not known); `wall`: first batch start to last batch end of the step;
    `batches`: reports received from all its stages.
    """

    step: int
    name: str
    op: str
    stage: str
    unit: str
    stage_done: int
    rows_in: int
    rows_out: int | None
    expected_in: int | None
    rate: float
    eta: float | None
    wall: float
    batches: int


def step_views(counters: list[Counter], steps: list[tuple[str, str]],
               total_rows: int | None) -> list[StepView]:
    """The steps that reported so far. `steps[i]` is step i's (name, op); `total_rows`
    the input rows (None: unknown, then no ETA).

    A step's expected input is its predecessor's output: exact once the predecessor saw
    all its input, else extrapolated from the kept fraction of its last stage so far.
    """
    by_step: dict[int, list[Counter]] = {}
    for c in counters:
        by_step.setdefault(c[0], []).append(c)
    views, expected = [], total_rows
    for step in range(len(steps)):
        mine = by_step.get(step)
        if not mine:
            continue  # e.g. the steps a resumed run skipped
        row_level = [c for c in mine if c[2] == ROWS]
        rows_in = max((c[3] for c in row_level), default=0)
        outs = [c for c in row_level if c[4] is not None]
        rows_out = outs[-1][4] if outs else None
        current = max(mine, key=lambda c: c[7])
        _, stage, unit, done, _, _, first, last = current
        rate = done / (last - first) if last > first else 0.0
        eta = None
        if unit == ROWS and expected is not None:
            left = max(expected - done, 0)
            eta = 0.0 if left == 0 else (left / rate if rate > 0 else None)
        name, op = steps[step]
        views.append(StepView(step, name, op, stage, unit, done, rows_in, rows_out,
                              expected, rate, eta,
                              max(c[7] for c in mine) - min(c[6] for c in mine),
                              sum(c[5] for c in mine)))
        if expected is not None and outs and outs[-1][3]:
            # the kept fraction of the rows its last stage has seen so far
            expected = round(expected * outs[-1][4] / outs[-1][3])
    return views


def wall_seconds(counters: list[Counter]) -> dict[int, float]:
    """Per step: from the start of its first reported batch to the end of its last."""
    spans: dict[int, tuple[float, float]] = {}
    for step, *_, first, last in counters:
        a, b = spans.get(step, (first, last))
        spans[step] = (min(a, first), max(b, last))
    return {step: b - a for step, (a, b) in spans.items()}


def clock(seconds: float | None) -> str:
    """`H:MM:SS` / `M:SS`, or `?` when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def format_line(v: StepView) -> str:
    """The plain progress line of a step (non-terminal output, e.g. CI logs)."""
    head = f"step {v.step} {v.name}" + (f" [{v.stage}]" if v.stage else "")
    if v.unit != ROWS:
        return f"{head}: {v.stage_done:,} {v.unit} done, {v.rows_in:,} rows in"
    out = "?" if v.rows_out is None else f"{v.rows_out:,}"
    eta = "no ETA (input size unknown)" if v.expected_in is None else f"ETA {clock(v.eta)}"
    return f"{head}: {v.rows_in:,} in, {out} out, {v.rate:,.0f} docs/s, {eta}"


@dataclass(frozen=True)
class RunProgress:
    """What the driver knows at one moment: step views, shards written, elapsed time."""

    steps: list[StepView]
    shards_done: int
    shards_total: int
    rows_kept: int
    elapsed: float
    total_rows: int | None


class Poller:
    """Calls `on_update` with a `RunProgress` every `interval` seconds from a thread.

    `source()` returns the tally's counters; a failed poll (e.g. the actor is busy or
    gone) is skipped, never raised into the run.
    """

    def __init__(self, source: Callable[[], list[Counter]], steps: list[tuple[str, str]],
                 total_rows: int | None, on_update: Callable[[RunProgress], None] | None,
                 interval: float = 0.5) -> None:
        self.source, self.steps, self.total_rows = source, steps, total_rows
        self.on_update, self.interval = on_update, interval
        self.shards = (0, 0, 0)
        self.counters: list[Counter] = []
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="curate-progress",
                                        daemon=True)

    def start(self) -> None:
        if self.on_update is not None:
            self._thread.start()

    def written(self, done: int, total: int, kept: int) -> None:
        self.shards = (done, total, kept)

    def poll(self) -> None:
        try:
            self.counters = self.source()
        except Exception:  # noqa: BLE001 - a display must not fail the run
            return
        if self.on_update is not None:
            self.on_update(RunProgress(step_views(self.counters, self.steps, self.total_rows),
                                       *self.shards, time.perf_counter() - self._t0,
                                       self.total_rows))

    def stop(self) -> None:
        """Stop polling and take a last snapshot (its counters: `self.counters`)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.poll()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()
