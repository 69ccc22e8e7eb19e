"""`curate inspect` and `curate explain`: read documents and one row's story in a terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from curate.cli_app import app, fail, out_console

WIDTH = 600  # characters of a document shown (around the matched part when there is one)
MATCH = "bold black on yellow"
FAILED = "bold red"


@app.command()
def inspect(
    out: Path,
    step: Annotated[str, typer.Option("--step", "-s", help="step number or name")],
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="only this drop reason")
                      ] = None,
    n: Annotated[int, typer.Option("-n", min=1, help="how many documents")] = 5,
    kept: Annotated[bool, typer.Option("--kept", help="kept rows (from OUT) instead of dropped "
                                                      "ones")] = False,
) -> None:
    """Show documents a step dropped (or, with --kept, rows of the output) with the step's
    signals; the failing rule's value vs its threshold, or the text a duplicate shares with
    the row it was dropped for, highlighted. Dropped texts come from the `removed` view
    (`output.keep_removed`)."""
    from curate.inspect import InspectError

    run = _open(out)
    try:
        chosen = run.step(step)
        docs = run.kept(chosen, n) if kept else run.dropped(chosen, reason, n)
    except InspectError as exc:
        fail(str(exc), code=2)
    finally:
        run.close()
    what = "kept (from the output)" if kept else "dropped" + (f" for {reason}" if reason else "")
    out_console.print(f"[bold]step {chosen.step} {chosen.name}[/] ({chosen.op}), run "
                      f"{run.run_id}: {len(docs)} document(s) {what}", highlight=False)
    for doc in docs:
        out_console.print(doc_panel(doc, chosen.step))


@app.command()
def explain(out: Path, id_: Annotated[str, typer.Argument(metavar="ID", help="an input row id")]
            ) -> None:
    """The story of one input row: each step's signals and decision, the duplicate-of chain
    to the row that was kept (with its excerpt), and the cluster it fell in."""
    from curate.inspect import InspectError

    run = _open(out)
    try:
        story = run.story(id_)
    except InspectError as exc:
        fail(str(exc), code=2)
    finally:
        run.close()
    doc = story.doc
    fate = ("[green]kept[/] (in the output)" if doc.step is None else
            f"[red]dropped[/] at step {doc.step}: {doc.reason}")
    out_console.print(f"[bold]{doc.id}[/] in run {run.run_id}: {fate}", highlight=False)
    out_console.print(steps_table(story))
    for link in story.chain:
        state = "kept" if link.step is None else f"dropped at step {link.step}: {link.reason}"
        out_console.print(f"duplicate of [bold]{link.id}[/] ({state})", highlight=False)
    if story.chain:
        last = story.chain[-1]
        end = {"kept": f"the chain ends at {last.id}, kept in the output:",
               "dropped": f"the chain ends at {last.id}, dropped without a further link:",
               }.get(story.chain_end, "")
        out_console.print(end, highlight=False)
        out_console.print(_text(last.text, []))
    elif story.chain_end == "missing":
        out_console.print(f"its detail names {doc.detail!r}, which is not a row of this run")
    for c in story.clusters:
        more = f": also {', '.join(c.members)}" + (" …" if c.size - 1 > len(c.members) else "")
        out_console.print(f"step {c.step} {c.key} [bold]{c.value}[/] ({c.size:,} rows"
                          + (f"{more})" if c.members else ", only this one)"), highlight=False)
    if doc.text is not None:
        out_console.print(Panel(_text(doc.text, doc.duplicate.spans if doc.duplicate else []),
                                title="text" if doc.step is None else "text when dropped",
                                title_align="left"))


def _open(out: Path):
    from curate.inspect import InspectError, Run

    try:
        return Run(out)
    except InspectError as exc:
        fail(str(exc), code=2)


def steps_table(story) -> Table:
    """One row per step: the decision and the signals the step recorded for the row."""
    doc = story.doc
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("step", "name", "op", "decision", "signals"):
        table.add_column(col)
    for s in story.steps:
        if doc.step is not None and s.step > doc.step:
            decision = Text("not reached", style="dim")
        elif s.step == doc.step:
            decision = Text(f"dropped: {doc.reason}" + (f" ({doc.detail})" if doc.detail else ""),
                            style=FAILED)
        else:
            decision = Text("kept", style="green")
        table.add_row(str(s.step), s.name, s.op, decision,
                      _signals(doc.signals.get(s.step, {}), doc if s.step == doc.step else None))
    return table


def doc_panel(doc, step: int) -> Panel:
    """A document: its decision, the step's signals (the failing one marked), its text
    with the matched part highlighted."""
    parts: list = []
    if doc.rule:  # the failing signal's value against the step's threshold
        r = doc.rule
        parts.append(Text.assemble((doc.reason, FAILED), ": ", (f"{r.key} = {r.value}", FAILED),
                                   f" {r.op} {r.param} = {r.threshold}"))
    elif doc.reason:
        parts.append(Text.assemble((doc.reason, FAILED), f"  {doc.detail or ''}"))
    if doc.duplicate:
        d = doc.duplicate
        shared = sum(y - x for x, y in d.spans)
        parts.append(Text(f"duplicate of {d.kept_id}; highlighted: the {shared:,} characters "
                          "both texts share" if d.spans else f"duplicate of {d.kept_id}"))
    signals = doc.signals.get(step, {})
    if signals:
        parts.append(_signals(signals, doc))
    parts.append(_text(doc.text, doc.duplicate.spans if doc.duplicate else []))
    if doc.duplicate and doc.duplicate.kept_text is not None:
        parts.append(Text(f"kept row {doc.duplicate.kept_id}:", style="bold"))
        parts.append(_text(doc.duplicate.kept_text, doc.duplicate.kept_spans))
    return Panel(Group(*parts), title=doc.id, title_align="left")


def _signals(values: dict, doc) -> Text:
    rule_key = doc.rule.key if doc is not None and doc.rule else None
    text = Text()
    for i, (key, value) in enumerate(sorted(values.items())):
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        text.append(("  " if i else "") + f"{key}=")
        text.append(shown, style=FAILED if key == rule_key else "")
    return text


def _text(text: str | None, spans: list[tuple[int, int]]) -> Text:
    from curate.inspect import excerpt

    if text is None:
        return Text("(no text: it was not kept, or the reader could not read the row)",
                    style="dim")
    shown, moved = excerpt(text, spans, WIDTH)
    out = Text(shown)
    for a, b in moved:
        out.stylize(MATCH, a, b)
    return out
