"""The report's charts: matplotlib figures rendered to inline SVG.

SVG keeps the report one self-contained file with no JavaScript: text stays text
(`svg.fonttype: none`, no embedded glyph outlines), so a chart is a few kB. Data artists
carry ids (`data-N`, `threshold-N`) so a test can tell a drawn chart from an empty frame;
`inline` makes every id unique within the page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import matplotlib as mpl
from matplotlib.figure import Figure

from curate.report_data import Histogram

KEPT, DROPPED, THRESHOLD = "#4c78a8", "#e45756", "#222222"
PALETTE = tuple(mpl.colormaps["tab20"].colors)  # drop reasons: 20 distinct colours
_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "curate-report", "font.size": 8,
          "axes.spines.top": False, "axes.spines.right": False, "font.family": "sans-serif"}
_IDS = re.compile(r'\bid="([^"]+)"')
_FLOAT = re.compile(r"(?<![\w#.-])-?\d+\.\d{3,}")
_ATTR = re.compile(r'="[^"]*"')


def _round(m: re.Match[str]) -> str:
    return f"{float(m.group(0)):.2f}".rstrip("0").rstrip(".")


def _short(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def label(text: object) -> str:
    """User text as a literal matplotlib label: `$` would start mathtext."""
    return str(text).replace("\\", "\\\\").replace("$", r"\$")


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    with mpl.rc_context(_STYLE):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None},
                    bbox_inches="tight")
    return compact(buf.getvalue())


def compact(svg: str) -> str:
    """matplotlib's SVG made small: no prolog or metadata (inlined in HTML), coordinates
    to 0.01 pt, no indentation."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = _ATTR.sub(lambda a: _FLOAT.sub(_round, a.group(0)), svg)  # attributes, not text
    return re.sub(r"\s*\n\s*", " ", re.sub(r">\s+<", "><", svg))


def inline(svg: str, prefix: str) -> str:
    """`svg` with every id (and its references) prefixed, so charts can share a page."""
    ids = set(_IDS.findall(svg))

    def rename(m: re.Match[str]) -> str:
        return f'{m.group(1)}{prefix}-{m.group(2)}{m.group(3)}'

    svg = re.sub(r'(\bid=")([^"]+)(")', rename, svg)
    for old in sorted(ids, key=len, reverse=True):
        svg = svg.replace(f"url(#{old})", f"url(#{prefix}-{old})")
        svg = svg.replace(f'href="#{old}"', f'href="#{prefix}-{old}"')
    return svg


def _figure(width: float, height: float) -> Figure:
    with mpl.rc_context(_STYLE):
        return Figure(figsize=(width, height), layout="constrained")


def _mark(artists, kind: str = "data") -> None:
    for i, a in enumerate(artists):
        a.set_gid(f"{kind}-{i}")


def funnel(names: Sequence[str], rows_in: Sequence[int], rows_out: Sequence[int]) -> str:
    """Rows into and out of each step, one horizontal bar pair per step."""
    with mpl.rc_context(_STYLE):
        fig = _figure(5.6, 0.3 * len(names) + 0.9)
        ax = fig.add_subplot()
        y = range(len(names))
        _mark(ax.barh(y, rows_in, color="#d0d7e2", label="rows in"))
        bars = ax.barh(y, rows_out, height=0.5, color=KEPT, label="rows out")
        _mark(bars, "data-out")
        ax.bar_label(bars, labels=[f"{v:,}" for v in rows_out], padding=3, fontsize=7)
        ax.set_yticks(list(y), [label(n) for n in names])
        ax.invert_yaxis()
        ax.set_xlabel("rows")
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, frameon=False)
        return _svg(fig)


def step_bars(names: Sequence[str], values: Sequence[float], xlabel: str) -> str:
    """One bar per step (e.g. CPU seconds)."""
    with mpl.rc_context(_STYLE):
        fig = _figure(5.6, 0.3 * len(names) + 0.9)
        ax = fig.add_subplot()
        bars = ax.barh(range(len(names)), values, color=KEPT)
        _mark(bars)
        ax.bar_label(bars, labels=[f"{v:,.2f}" for v in values], padding=3, fontsize=7)
        ax.set_yticks(list(range(len(names))), [label(n) for n in names])
        ax.invert_yaxis()
        ax.set_xlabel(label(xlabel))
        return _svg(fig)


def drops(names: Sequence[str], by_reason: dict[str, Sequence[int]]) -> str:
    """Rows dropped per step, stacked by reason."""
    with mpl.rc_context(_STYLE):
        fig = _figure(6.0, max(0.3 * len(names) + 0.9, 0.13 * len(by_reason) + 0.4))
        ax = fig.add_subplot()
        left = [0] * len(names)
        for i, (reason, counts) in enumerate(by_reason.items()):
            bars = ax.barh(range(len(names)), counts, left=left, label=label(reason),
                           color=PALETTE[i % len(PALETTE)])
            _mark(bars, f"data-{i}")
            left = [a + b for a, b in zip(left, counts, strict=True)]
        ax.set_yticks(list(range(len(names))), [label(n) for n in names])
        ax.invert_yaxis()
        ax.set_xlabel("rows dropped")
        ax.legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return _svg(fig)


def histogram(h: Histogram) -> str:
    """A signal's distribution, kept and dropped rows stacked, thresholds drawn."""
    with mpl.rc_context(_STYLE):
        fig = _figure(3.3, 2.0)
        ax = fig.add_subplot()
        width = (h.hi - h.lo) / len(h.kept)
        edges = [h.lo + i * width for i in range(len(h.kept) + 1)]
        stacked = [k + d for k, d in zip(h.kept, h.dropped, strict=True)]
        # One outline per colour (not a rectangle per bin): a few hundred bytes of SVG.
        _mark([ax.stairs(h.kept, edges, fill=True, color=KEPT, label="kept")])
        if any(h.dropped):
            _mark([ax.stairs(stacked, edges, baseline=h.kept, fill=True, color=DROPPED,
                             label="dropped")], "data-dropped")
        notes = []
        for i, t in enumerate(h.thresholds):
            if not h.lo <= t.value <= h.hi:
                notes.append(f"{t.param}={_short(t.value)} (off the data)")
                continue
            line = ax.axvline(t.value, color=THRESHOLD, linestyle="--", linewidth=1)
            line.set_gid(f"threshold-{i}")
            ax.annotate(label(f"{t.param}={t.value:g}"), (t.value, 1.0),
                        xycoords=("data", "axes fraction"), fontsize=6, rotation=90,
                        ha="right", va="top")
        ax.set_xlim(h.lo, h.hi)
        ax.set_title(label(f"{h.key}  (step {h.step} {h.name})"), fontsize=8)
        if h.above:
            notes.append(f"last bar also holds {h.above:,} values up to {_short(h.max)}")
        if notes:
            ax.set_xlabel(label("; ".join(notes)), fontsize=6)
        if any(h.dropped):
            ax.legend(fontsize=6, frameon=False)
        return _svg(fig)


def cluster_sizes(sizes: Sequence[tuple[int, int]]) -> str:
    """How many duplicate clusters have each size (kept row included)."""
    with mpl.rc_context(_STYLE):
        fig = _figure(3.3, 2.0)
        ax = fig.add_subplot()
        _mark(ax.bar([str(s) for s, _ in sizes], [n for _, n in sizes], color=KEPT))
        ax.set_xlabel("cluster size (rows, kept one included)")
        ax.set_ylabel("clusters")
        if max(n for _, n in sizes) > 50 * min(n for _, n in sizes):
            ax.set_yscale("log")
        ax.tick_params(axis="x", labelsize=6, rotation=90 if len(sizes) > 12 else 0)
        return _svg(fig)


def compare(names: Sequence[str], a: Sequence[int | None], b: Sequence[int | None],
            run_a: str, run_b: str) -> str:
    """Rows out per step of two runs, side by side (a missing step is not drawn)."""
    with mpl.rc_context(_STYLE):
        fig = _figure(6.5, 0.4 * len(names) + 0.9)
        ax = fig.add_subplot()
        y = list(range(len(names)))
        _mark(ax.barh([v - 0.2 for v in y], [v or 0 for v in a], height=0.4, color="#9ecae9",
                      label=label(run_a)))
        _mark(ax.barh([v + 0.2 for v in y], [v or 0 for v in b], height=0.4, color=KEPT,
                      label=label(run_b)), "data-b")
        ax.set_yticks(y, [label(n) for n in names])
        ax.invert_yaxis()
        ax.set_xlabel("rows out")
        ax.legend(frameon=False, loc="lower right")
        return _svg(fig)
