"""What `curate run` shows while it works and when it ends.

On a terminal: a live table (one row per step: stage, rows in/out, docs/s, ETA, wall
time), redrawn with every progress update (~2 per second). Elsewhere (CI logs, a pipe):
one plain line per active step every `PLAIN_EVERY_S` seconds, and only when its counts
moved. Counts come from `pipelines.progress`.
"""

from __future__ import annotations

import threading
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pipelines.progress import ROWS, RunProgress, StepView, clock, format_line

PLAIN_EVERY_S = 3.0


class RunDisplay:
    """A `progress` callback for `pipelines.runner.run`, safe to call from a thread."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = Live(Text("starting"), console=console, auto_refresh=False,
                         transient=False) if console.is_terminal else None
        self._lock = threading.Lock()
        self._printed_at = 0.0
        self._printed: dict[int, str] = {}

    def __enter__(self) -> RunDisplay:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """End the live table, e.g. before an error is printed under it."""
        with self._lock:
            if self.live is not None:
                self.live.stop()
            self.live = None

    def __call__(self, state: RunProgress) -> None:
        with self._lock:
            if self.live is not None:
                self.live.update(render(state), refresh=True)
            elif not self.console.is_terminal:
                self._plain(state)

    def _plain(self, state: RunProgress) -> None:
        now = time.monotonic()
        if not state.steps or now - self._printed_at < PLAIN_EVERY_S:
            return
        self._printed_at = now
        for view in state.steps:
            line = format_line(view)
            if self._printed.get(view.step) != line:
                self._printed[view.step] = line
                self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def render(state: RunProgress) -> Group:
    """The live table of `state` and a line on elapsed time and shards written."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("step", "name", "stage", "in", "out", "docs/s", "ETA", "wall"):
        table.add_column(col, justify="left" if col in ("name", "stage") else "right")
    for v in state.steps:
        table.add_row(str(v.step), v.name, _stage(v), f"{v.rows_in:,}",
                      "" if v.rows_out is None else f"{v.rows_out:,}",
                      f"{v.rate:,.0f}" if v.unit == ROWS else "", _eta(v), clock(v.wall))
    eta = max((v.eta for v in state.steps if v.eta), default=None)
    total = "input size unknown: no ETA" if state.total_rows is None else (
        f"{state.total_rows:,} input rows")
    foot = (f"{clock(state.elapsed)} elapsed, {total}"
            + (f", ETA {clock(eta)}" if eta else "")
            + f"; {state.shards_done}/{state.shards_total or '?'} shards written"
            + (f", {state.rows_kept:,} rows kept" if state.shards_done else ""))
    return Group(table, Text(foot, style="dim"))


def _stage(v: StepView) -> str:
    if not v.stage:
        return ""
    return v.stage if v.unit == ROWS else f"{v.stage} ({v.stage_done:,} {v.unit})"


def _eta(v: StepView) -> str:
    if v.unit != ROWS:
        return ""
    if v.expected_in is None:
        return "unknown"
    return "done" if v.eta == 0 else clock(v.eta)


def funnel_table(ops: list[dict], wall: dict[int, float]) -> Table:
    """The final funnel: rows in/out/dropped, CPU and wall seconds per step, and tokens
    out when the run counted them (`ops.tokens_out`, null when the tokenizer is off)."""
    tokens = any(r.get("tokens_out") is not None for r in ops)
    table = Table(title="funnel", title_justify="left")
    cols = ["step", "name", "op", "in", "out", "dropped", "cpu s", "wall s"]
    cols += ["tokens out"] if tokens else []
    for col in cols:
        table.add_column(col, justify="left" if col in ("name", "op") else "right")
    for r in ops:
        w = wall.get(r["step"])
        cells = [str(r["step"]), r["name"], r["op"], f"{r['rows_in']:,}", f"{r['rows_out']:,}",
                 f"{r['rows_dropped']:,}", f"{r['seconds']:.2f}",
                 "" if w is None else f"{w:.2f}"]
        if tokens:
            t = r.get("tokens_out")
            cells.append("" if t is None else f"{t:,}")
        table.add_row(*cells)
    if wall:
        table.caption = "wall s: first batch start to last batch end (steps overlap)"
        table.caption_justify = "left"
    return table
