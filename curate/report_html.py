"""The report's HTML: sections assembled from the gathered figures and the SVG charts.

Every piece of text that comes from the data, the recipe or the run (document texts,
ids, reasons, details, step names) goes through `esc`: texts are hostile. The page has
no script and loads nothing: styles and charts are inline.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from curate import report_charts as charts
from curate.report_data import TOKEN_COLUMNS, Doc, RunReport

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1180px;padding:0 18px;
color:#222}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;margin:28px 0 8px;
border-bottom:1px solid #ddd}h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px}td,th{padding:2px 8px;white-space:nowrap;
border-bottom:1px solid #eee;text-align:left}td.n,th.n{text-align:right;
font-variant-numeric:tabular-nums}.meta{color:#555}.grid{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:4px 0}figure.chart svg{max-width:100%;height:auto}
.docs{display:flex;flex-wrap:wrap;gap:8px}.doc{flex:1 1 300px;max-width:380px;
border:1px solid #ddd;border-radius:4px;padding:6px 8px;background:#fafafa}
.doc.kept{border-left:4px solid #4c78a8}.doc.dropped{border-left:4px solid #e45756}
.doc pre{white-space:pre-wrap;word-break:break-word;font-size:12px;margin:4px 0;
max-height:14em;overflow:auto}.id{font-family:monospace;font-size:12px;color:#333}
.detail{font-size:12px;color:#a33}.sig{font-size:11px;color:#555}
.cluster{display:flex;gap:8px;overflow-x:auto;margin-bottom:10px}
.cluster .doc{min-width:260px}.up{color:#2a7}.down{color:#c33}
"""


def esc(value: object) -> str:
    """Text for HTML (element content and quoted attributes)."""
    return escape("" if value is None else str(value), quote=True)


def when(value: Any) -> str:
    """A timestamp to the second, in UTC."""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if hasattr(value, "strftime") else ""


def num(value: Any, digits: int = 0) -> str:
    if value is None:
        return ""
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int],
          attrs: str = "") -> str:
    """A table of already-escaped cells; columns in `numeric` right-aligned."""
    th = "".join(f'<th class="{"n" if i in numeric else ""}">{esc(h)}</th>'
                 for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="{"n" if i in numeric else ""}">{c}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table {attrs}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


class Page:
    """Collects sections and charts; each chart gets a unique id prefix."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.charts = 0

    def add(self, html: str) -> None:
        self.parts.append(html)

    def chart(self, name: str, svg: str, caption: str = "") -> str:
        self.charts += 1
        cap = f"<figcaption class='meta'>{esc(caption)}</figcaption>" if caption else ""
        return (f'<figure class="chart" data-chart="{esc(name)}">'
                f'{charts.inline(svg, f"c{self.charts}")}{cap}</figure>')

    def html(self, title: str) -> str:
        return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width,initial-scale=1'>"
                f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
                + "".join(self.parts) + "</body></html>\n")


def run_header(r: RunReport) -> str:
    run = r.run
    facts = [("run", run["run_id"]), ("recipe", run["recipe"]), ("status", run["status"]),
             ("started", when(run["started"])), ("finished", when(run["finished"])),
             ("input", run["input"]), ("rows in", num(run["rows_in"])),
             ("rows out", num(run["rows_out"]))]
    if run.get("error"):
        facts.append(("error", run["error"]))
    return "<p class='meta'>" + " · ".join(f"{esc(k)}: <b>{esc(v)}</b>" for k, v in facts) + "</p>"


def funnel_section(page: Page, r: RunReport) -> None:
    tokens = [c for c in TOKEN_COLUMNS if any(c in o for o in r.ops)]
    head = ["step", "name", "op", "rows in", "rows out", "rows dropped", "CPU s",
            *(c.replace("_", " ") for c in tokens)]
    rows = []
    for o in r.ops:
        cells = [f'<span data-field="step">{esc(o["step"])}</span>', esc(o["name"]),
                 esc(o["op"])]
        for field in ("rows_in", "rows_out", "rows_dropped"):
            cells.append(f'<span data-field="{field}" data-value="{esc(o[field])}">'
                         f'{num(o[field])}</span>')
        cells.append(num(o["seconds"], 2))
        cells += [f'<span data-field="{c}" data-value="{esc(o.get(c))}">{num(o.get(c))}</span>'
                  for c in tokens]
        rows.append(cells)
    page.add("<h2 id='funnel'>Funnel</h2>")
    if not r.ops:
        page.add("<p>This run has no ops rows (only a succeeded run records its funnel).</p>")
        return
    if not tokens:
        page.add("<p class='meta'>No token counts: this run's ops table has none.</p>")
    names = [f"{o['step']} {o['name']}" for o in r.ops]
    page.add(table(head, rows, {0, 3, 4, 5, 6, *range(7, 7 + len(tokens))},
                   "class='funnel' id='funnel-table'"))
    page.add("<div class='grid'>" + page.chart("funnel", charts.funnel(
        names, [o["rows_in"] for o in r.ops], [o["rows_out"] for o in r.ops]),
        "rows into and out of each step") + page.chart("cpu", charts.step_bars(
            names, [o["seconds"] or 0.0 for o in r.ops], "CPU seconds"),
            "CPU seconds per step, summed over workers") + "</div>")


def drops_section(page: Page, r: RunReport) -> None:
    page.add("<h2 id='drops'>Drops by reason</h2>")
    if not r.drops:
        page.add("<p>No row was dropped.</p>")
        return
    listing = table(["step", "reason", "rows"],
                    [[esc(d["step"]), esc(d["reason"]), num(d["rows"])] for d in r.drops],
                    {0, 2}, "class='drops'")
    steps = [o for o in r.ops if o["rows_dropped"]] or [
        {"step": s, "name": n} for s, n in sorted({(d["step"], d["name"]) for d in r.drops})]
    index = {o["step"]: i for i, o in enumerate(steps)}
    by_reason: dict[str, list[int]] = {}
    for d in r.drops:
        if d["step"] in index:
            by_reason.setdefault(d["reason"], [0] * len(steps))[index[d["step"]]] += d["rows"]
    page.add("<div class='grid'>" + page.chart("drops", charts.drops(
        [f"{o['step']} {o['name']}" for o in steps], by_reason)) + f"<div>{listing}</div></div>")


def signals_section(page: Page, r: RunReport) -> None:
    page.add("<h2 id='signals'>Signals</h2>")
    if not r.histograms and not r.text_tops:
        page.add("<p>No step of this run recorded signals.</p>")
        return
    page.add("<p class='meta'>Per step and numeric signal, the rows that step saw, "
             "<span style='color:#4c78a8'>kept</span> or <span style='color:#e45756'>"
             "dropped</span> by it; dashed lines are the step's thresholds.</p>")
    page.add("<div class='grid'>" + "".join(
        page.chart(f"hist:{h.step}:{h.key}", charts.histogram(h)) for h in r.histograms)
        + "</div>")
    page.add("<p class='meta'>Text signals: their most frequent values (values seen only "
             "once are not listed).</p>")
    for step, name, key, values in r.text_tops:
        page.add(f"<h3>Top values of {esc(key)} (step {esc(step)} {esc(name)})</h3>")
        page.add(table(["value", "rows"], [[f"<span class='id'>{esc(v)}</span>", num(n)]
                                           for v, n in values], {1}, "class='tops'"))


def doc_card(d: Doc, kind: str, signals_of_step: int | None = None) -> str:
    text = (f"<pre>{esc(d.excerpt)}</pre>" if d.excerpt is not None
            else "<p class='meta'>(text not kept)</p>")
    detail = f"<div class='detail'>{esc(d.detail)}</div>" if d.detail else ""
    sig = ""
    if signals_of_step is not None:
        mine = {k.split(":", 1)[1]: v for k, v in d.signals.items()
                if k.split(":", 1)[0] == str(signals_of_step)}
        if mine:
            sig = "<div class='sig'>" + ", ".join(f"{esc(k)}={esc(v)}"
                                                   for k, v in mine.items()) + "</div>"
    return (f"<div class='doc {kind}'><div class='id'>{esc(d.id)}</div>{detail}{sig}"
            f"{text}</div>")


def dedup_section(page: Page, r: RunReport) -> None:
    if not r.dedup:
        return
    page.add("<h2 id='duplicates'>Duplicate clusters</h2>")
    for d in r.dedup:
        page.add(f"<h3>Step {esc(d.step)} {esc(d.name)}</h3>")
        if not d.sizes:
            page.add("<p>No duplicates found.</p>")
            continue
        page.add(page.chart(f"clusters:{d.step}", charts.cluster_sizes(d.sizes),
                            "clusters by size: the kept row and the rows whose detail "
                            "names it"))
        for c in d.clusters:
            page.add(f"<p class='meta'>cluster of {num(c.size)} rows, kept "
                     f"<span class='id'>{esc(c.kept.id)}</span></p><div class='cluster'>"
                     + doc_card(c.kept, "kept") + "".join(doc_card(m, "dropped")
                                                          for m in c.removed) + "</div>")


def contamination_section(page: Page, r: RunReport) -> None:
    """Per decontam step: benchmarks (items, leaked, rows) and the most-leaked items."""
    if not r.contamination:
        return
    page.add("<h2 id='contamination'>Contamination</h2>")
    for c in r.contamination:
        page.add(f"<h3>Step {esc(c.step)} {esc(c.name)} ({esc(c.op)})</h3>")
        page.add(table(["benchmark", "items", "items leaked", "rows flagged", "rows dropped",
                        "methods"],
                       [[esc(b["benchmark"]), num(b["items"]), num(b["items_leaked"]),
                         num(b["rows_flagged"]), num(b["rows_dropped"]), esc(b["methods"])]
                        for b in c.benchmarks], {1, 2, 3, 4}, "data-table='contamination'"))
        if not c.leaked:
            page.add("<p>No item was matched (a Bloom-filter step names only the "
                     "benchmark).</p>" if any(b["rows_flagged"] for b in c.benchmarks)
                     else "<p>No benchmark item leaked.</p>")
            continue
        page.add(table(["benchmark", "item", "rows", "methods", "best score"],
                       [[esc(x["benchmark"]), f"<span class='id'>{esc(x['item_id'])}</span>",
                         num(x["rows"]), esc(x["methods"]), num(x["score"], 3)]
                        for x in c.leaked], {2, 4}, "data-table='leaked-items'"))
        if c.more:
            page.add(f"<p class='meta'>{num(c.more)} more leaked items: "
                     "<code>curate contamination OUT --items leaked</code></p>")


def samples_section(page: Page, r: RunReport) -> None:
    page.add("<h2 id='samples'>Sample documents</h2>")
    note = ("dropped texts as the step saw them (the run's removed sample)"
            if r.has_removed_texts else
            "this run kept no dropped texts (output.keep_removed: none, or a run from "
            "before it existed): ids and details only")
    page.add(f"<p class='meta'>Picked by the MD5 of the id, so the same run shows the same "
             f"rows. Kept: rows of the output ({esc(r.kept_source)}); {esc(note)}.</p>")
    for o in r.ops:
        reasons = sorted((reason, docs) for (s, reason), docs in r.dropped_samples.items()
                         if s == o["step"])
        if o["step"] == 0 and not reasons:
            continue
        page.add(f"<h3>Step {esc(o['step'])} {esc(o['name'])} ({esc(o['op'])})</h3>")
        if r.kept_samples:
            page.add("<p class='meta'>kept (in the output)</p><div class='docs'>"
                     + "".join(doc_card(d, "kept", o["step"]) for d in r.kept_samples)
                     + "</div>")
        for reason, docs in reasons:
            page.add(f"<p class='meta'>dropped: <b>{esc(reason)}</b></p><div class='docs'>"
                     + "".join(doc_card(d, "dropped") for d in docs) + "</div>")


def run_page(r: RunReport) -> str:
    page = Page()
    page.add(f"<h1>curate report: {esc(r.run['recipe'])}</h1>" + run_header(r))
    funnel_section(page, r)
    drops_section(page, r)
    signals_section(page, r)
    dedup_section(page, r)
    contamination_section(page, r)
    samples_section(page, r)
    return page.html(f"curate report {r.run['run_id']}")


def _delta(a: int | None, b: int | None) -> str:
    if a is None or b is None:
        return ""
    d = b - a
    cls = "up" if d > 0 else "down" if d < 0 else ""
    return f"<span class='{cls}'>{d:+,}</span>"


def changed_params(a: RunReport, b: RunReport) -> dict[str, str]:
    """Step name -> the params that differ between the two runs' recipes, `k: a → b`."""
    pa_ = {st.name: st.params for st in a.steps}
    pb_ = {st.name: st.params for st in b.steps}
    found = {}
    for name in set(pa_) & set(pb_):
        keys = sorted(k for k in set(pa_[name]) | set(pb_[name])
                      if pa_[name].get(k) != pb_[name].get(k))
        found[name] = "; ".join(f"{k}: {pa_[name].get(k)!r} → {pb_[name].get(k)!r}"
                                for k in keys)
    for name in set(pa_) ^ set(pb_):
        found[name] = "only in A" if name in pa_ else "only in B"
    return found


def compare_page(a: RunReport, b: RunReport) -> str:
    """Two runs side by side: per step (matched by name) rows, drops and reasons."""
    page = Page()
    ida, idb = a.run["run_id"], b.run["run_id"]
    page.add(f"<h1>curate report: {esc(ida)} vs {esc(idb)}</h1>")
    page.add("<p class='meta'>A</p>" + run_header(a) + "<p class='meta'>B</p>" + run_header(b))
    ops_a = {o["name"]: o for o in a.ops}
    ops_b = {o["name"]: o for o in b.ops}
    names = list(ops_a) + [n for n in ops_b if n not in ops_a]
    changes = changed_params(a, b)
    rows = []
    for n in names:
        oa, ob = ops_a.get(n, {}), ops_b.get(n, {})
        cells = [esc(n), esc(oa.get("op") or ob.get("op"))]
        for f in ("rows_in", "rows_out", "rows_dropped"):
            cells += [num(oa.get(f)), num(ob.get(f)), _delta(oa.get(f), ob.get(f))]
        cells += [num(oa.get("seconds"), 2), num(ob.get("seconds"), 2),
                  esc(changes.get(n, ""))]
        rows.append(cells)
    page.add("<h2 id='compare'>Per step</h2>")
    page.add(table(["step", "op", "in A", "in B", "Δ", "out A", "out B", "Δ", "dropped A",
                    "dropped B", "Δ", "CPU s A", "CPU s B", "params changed"], rows,
                   set(range(2, 13)),
                   "class='compare'"))
    page.add(page.chart("compare", charts.compare(
        names, [ops_a.get(n, {}).get("rows_out") for n in names],
        [ops_b.get(n, {}).get("rows_out") for n in names], f"A {ida}", f"B {idb}")))
    reasons_a = {(d["name"], d["reason"]): d["rows"] for d in a.drops}
    reasons_b = {(d["name"], d["reason"]): d["rows"] for d in b.drops}
    keys = sorted(set(reasons_a) | set(reasons_b),
                  key=lambda k: (names.index(k[0]) if k[0] in names else len(names), k[1]))
    page.add("<h2 id='compare-drops'>Drops by reason</h2>")
    page.add(table(["step", "reason", "A", "B", "Δ"], [
        [esc(s), esc(reason), num(reasons_a.get((s, reason), 0)),
         num(reasons_b.get((s, reason), 0)),
         _delta(reasons_a.get((s, reason), 0), reasons_b.get((s, reason), 0))]
        for s, reason in keys], {2, 3, 4}, "class='compare-drops'")
        if keys else "<p>Neither run dropped a row.</p>")
    return page.html(f"curate report {ida} vs {idb}")
