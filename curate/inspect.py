"""What `curate inspect` and `curate explain` show, without the terminal: documents of a
run with their signals and decisions, and the matched part where the step knows it.

Everything comes from the run whose shards OUT holds (its manifest): dropped rows and
their texts from the `removed` view (`output.keep_removed`), decisions from `dropped`,
signals from `signals`, kept rows from the output shards. Queries go through the
read-only stats sandbox (`curate.stats.connect`).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import yaml

from curate import stats
from pipelines import layout

RULE = re.compile(r"^(?P<key>[\w.]+)=(?P<value>\S+) (?P<op>[<>]=?) (?P<param>[\w.]+)="
                  r"(?P<threshold>\S+)")
MATCH_CHARS = 5_000  # texts compared for shared spans are cut to this many characters
MIN_SHARED = 12  # shorter common runs (a word, a space) are not worth highlighting
CLUSTER_KEYS = ("cluster", "component")  # signals naming the group a row fell in
MAX_CHAIN = 50  # duplicate-of links followed before giving up (a chain never loops)


class InspectError(ValueError):
    """A question about a run that cannot be answered: no run, unknown step or id."""


@dataclass(frozen=True)
class Step:
    step: int
    name: str
    op: str
    rows_in: int
    rows_dropped: int


@dataclass
class Rule:
    """A failing rule parsed from a detail: `key=value op param=threshold`."""

    key: str
    value: str
    op: str
    param: str
    threshold: str


@dataclass
class Duplicate:
    """The row a duplicate was dropped for, and the text spans they share."""

    kept_id: str
    kept_text: str | None  # None: that row's text is neither in OUT nor kept in `removed`
    spans: list[tuple[int, int]] = field(default_factory=list)       # in the dropped text
    kept_spans: list[tuple[int, int]] = field(default_factory=list)  # the same, in the kept


@dataclass
class Doc:
    id: str
    text: str | None
    step: int | None = None    # the step that dropped it (None: kept)
    reason: str | None = None
    detail: str | None = None
    signals: dict[int, dict[str, float | str]] = field(default_factory=dict)  # step -> key
    rule: Rule | None = None
    duplicate: Duplicate | None = None


@dataclass
class Cluster:
    step: int
    key: str
    value: str
    size: int
    members: list[str]  # a few other ids in it, in id order


@dataclass
class Story:
    """One input row through the run (`explain`)."""

    doc: Doc
    steps: list[Step]
    chain: list[Doc]  # duplicate-of links, each the row the previous one was dropped for
    chain_end: str    # "kept", "missing" (an id not in the run) or "dropped" (no link on)
    clusters: list[Cluster]


class Run:
    """The published run of an output folder, open for questions."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        manifest = layout.manifest_file(self.out)
        if not manifest.is_file():
            raise InspectError(f"{out} holds no published curate run (no {manifest}); "
                               "run a recipe into it first")
        info = json.loads(manifest.read_text())
        self.run_id: str = info["run_id"]
        self.files = [self.out / f for f in info["files"]]
        self.run_dir = layout.runs_dir(self.out) / self.run_id
        recipe = yaml.safe_load(layout.recipe_file(self.run_dir).read_text()) or {}
        inp = recipe.get("input") or {}
        self.text_column = inp.get("text_column", "text")
        self.id_column = inp.get("id_column", "id")
        try:
            self.con = stats.connect(self.out)
        except stats.StatsError as exc:
            raise InspectError(str(exc)) from None
        self.steps = [Step(*r) for r in self._rows(
            "SELECT step, name, op, rows_in, rows_dropped FROM all_ops WHERE run_id = ? "
            "ORDER BY step", self.run_id)]
        if not self.steps:
            raise InspectError(f"run {self.run_id} in {out} has no funnel (ops); did it finish?")

    def close(self) -> None:
        self.con.close()

    def _rows(self, sql: str, *params) -> list[tuple]:
        return self.con.execute(sql, list(params)).fetchall()

    # ---- steps ----------------------------------------------------------------------

    def step(self, which: str) -> Step:
        """A step by number, name or (if unique) op name."""
        if which.strip().isdigit():
            found = [s for s in self.steps if s.step == int(which)]
        else:
            found = ([s for s in self.steps if s.name == which]
                     or [s for s in self.steps if s.op == which])
        if len(found) != 1:
            listed = ", ".join(f"{s.step} {s.name} ({s.op})" for s in self.steps)
            why = "is ambiguous" if found else "is not a step of"
            raise InspectError(f"step {which!r} {why} run {self.run_id}; steps: {listed}")
        return found[0]

    # ---- documents ------------------------------------------------------------------

    def dropped(self, step: Step, reason: str | None, n: int) -> list[Doc]:
        """Up to `n` rows `step` dropped (for `reason`), with their texts, by id."""
        if not step.rows_dropped:
            raise InspectError(f"step {step.step} {step.name} dropped no rows")
        reasons = dict(self._rows("SELECT reason, count(*) FROM all_dropped WHERE run_id = ? "
                                  "AND step = ? GROUP BY 1", self.run_id, step.step))
        if reason is not None and reason not in reasons:
            raise InspectError(f"step {step.step} {step.name} dropped no rows for {reason!r}; "
                               f"its reasons: {_counts(reasons)}")
        sql = ("SELECT id, text, reason, detail FROM all_removed WHERE run_id = ? AND step = ?"
               + (" AND reason = ?" if reason else "") + " ORDER BY reason, id LIMIT ?")
        rows = self._rows(sql, self.run_id, step.step, *([reason] if reason else []), n)
        if not rows:
            raise InspectError(
                f"step {step.step} {step.name} dropped {sum(reasons.values()):,} rows "
                f"({_counts(reasons)}), but run {self.run_id} kept none of their texts"
                + (f" for {reason!r}" if reason else "") + "; rerun with "
                "`--set output.keep_removed=all` (or `output.keep_removed: all` in the recipe) "
                "to keep them")
        docs = [Doc(i, t, step.step, r, d) for i, t, r, d in rows]
        self._attach_signals(docs, step.step)
        for doc in docs:
            self._explain_drop(doc)
        return docs

    def kept(self, step: Step, n: int) -> list[Doc]:
        """The first `n` rows of the output (in input order), with `step`'s signals."""
        table = self._output(None, n)
        docs = [Doc(str(i), t) for i, t in zip(table["id"].to_pylist(),
                                                table["text"].to_pylist(), strict=True)]
        self._attach_signals(docs, step.step)
        return docs

    def story(self, id_: str) -> Story:
        """Everything the run recorded about input row `id_`."""
        doc = self._doc(id_)
        if doc is None:
            raise InspectError(f"id {id_!r} is not in run {self.run_id}: it is neither in the "
                               f"output of {self.out} nor among its dropped rows")
        self._attach_signals([doc], None)
        chain, end, seen = [], "kept" if doc.step is None else "dropped", {id_}
        link = doc
        while link.duplicate is not None and len(chain) < MAX_CHAIN:
            kept_id = link.duplicate.kept_id
            if kept_id in seen:
                break
            seen.add(kept_id)
            nxt = self._doc(kept_id)
            if nxt is None:
                end = "missing"
                break
            chain.append(nxt)
            end, link = ("kept" if nxt.step is None else "dropped"), nxt
        return Story(doc, self.steps, chain, end, self._clusters(doc))

    # ---- lookups --------------------------------------------------------------------

    def _doc(self, id_: str, explain: bool = True) -> Doc | None:
        """The row `id_` as kept in OUT, or as dropped (text from `removed` if kept);
        with `explain`, what its detail names (`_explain_drop`)."""
        found = self._rows("SELECT d.step, d.reason, d.detail, r.text FROM all_dropped d "
                           "LEFT JOIN all_removed r ON r.run_id = d.run_id AND r.id = d.id "
                           "AND r.step = d.step WHERE d.run_id = ? AND d.id = ? "
                           "ORDER BY d.step LIMIT 1", self.run_id, id_)
        if found:
            step, reason, detail, text = found[0]
            doc = Doc(id_, text, step, reason, detail)
            if explain:
                self._explain_drop(doc)
            return doc
        table = self._output([id_], 1)
        return Doc(id_, table["text"][0].as_py()) if table.num_rows else None

    def _explain_drop(self, doc: Doc) -> None:
        """The failing rule in its detail, or the row it duplicates (detail = an id)."""
        if not doc.detail:
            return
        if m := RULE.match(doc.detail):
            doc.rule = Rule(**m.groupdict())
            return
        if not doc.reason or doc.detail == doc.id or doc.reason == "duplicate_id":
            return
        other = self._doc(doc.detail, explain=False)
        if other is not None:
            doc.duplicate = Duplicate(other.id, other.text)
            if doc.text and other.text:
                doc.duplicate.spans, doc.duplicate.kept_spans = shared_spans(doc.text,
                                                                             other.text)

    def _output(self, ids: list[str] | None, limit: int) -> pa.Table:
        """`id` (as text) and `text` of kept rows from the output shards: those with `ids`,
        or the first `limit` rows."""
        files = [str(f) for f in self.files if f.is_file()]
        if not files:
            return pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())})
        dataset = pds.dataset(files, format="parquet")
        columns = {"id": pc.field(self.id_column).cast(pa.string()),
                   "text": pc.field(self.text_column)}
        where = None if ids is None else pc.field(self.id_column).cast(pa.string()).isin(ids)
        return dataset.to_table(columns=columns, filter=where).slice(0, limit) \
            if ids is not None else dataset.head(limit, columns=columns)

    def _attach_signals(self, docs: list[Doc], step: int | None) -> None:
        """Each doc's signals (of `step` only, when given)."""
        if not docs:
            return
        by_id = {d.id: d for d in docs}
        marks = ", ".join("?" for _ in by_id)
        sql = (f"SELECT id, step, key, num, text FROM all_signals WHERE run_id = ? "
               f"AND id IN ({marks})" + (" AND step = ?" if step is not None else "")
               + " ORDER BY step, key")
        for id_, s, key, num, text in self._rows(sql, self.run_id, *by_id,
                                                  *([step] if step is not None else [])):
            by_id[id_].signals.setdefault(s, {})[key] = num if num is not None else text

    def _clusters(self, doc: Doc) -> list[Cluster]:
        """The groups `doc` fell in: signals named like `cluster`/`component`, and the
        other rows with the same value at that step."""
        out = []
        for step, values in sorted(doc.signals.items()):
            for key, value in values.items():
                if not any(key == k or key.endswith(f"_{k}") for k in CLUSTER_KEYS):
                    continue
                same = ("FROM all_signals WHERE run_id = ? AND step = ? AND key = ? AND "
                        + ("num = ?" if isinstance(value, float) else "text = ?"))
                args = (self.run_id, step, key, value)
                (size,), = self._rows(f"SELECT count(*) {same}", *args)
                members = [r[0] for r in self._rows(
                    f"SELECT id {same} AND id <> ? ORDER BY id LIMIT 5", *args, doc.id)]
                out.append(Cluster(step, key, _as_text(value), size, members))
        return out


Spans = list[tuple[int, int]]


def shared_spans(a: str, b: str) -> tuple[Spans, Spans]:
    """The runs of at least `MIN_SHARED` characters that `a` and `b` share, in order (a
    longest-common-block alignment, difflib's): their (start, end) in `a` and in `b`."""
    a, b = a[:MATCH_CHARS], b[:MATCH_CHARS]
    blocks = [m for m in difflib.SequenceMatcher(None, a, b, autojunk=False)
              .get_matching_blocks() if m.size >= MIN_SHARED]
    return ([(m.a, m.a + m.size) for m in blocks], [(m.b, m.b + m.size) for m in blocks])


def excerpt(text: str, spans: Spans, width: int) -> tuple[str, Spans]:
    """`text` cut to about `width` characters, centred on the longest of `spans`; the
    spans moved into (and clipped to) the cut text. `…` marks text left out."""
    if len(text) <= width:
        return text, spans
    a, b = max(spans, key=lambda s: s[1] - s[0]) if spans else (0, 0)
    start = max(0, min(a - max(width - (b - a), 0) // 2, len(text) - width))
    head = "… " if start else ""
    tail = " …" if start + width < len(text) else ""
    shift = len(head) - start
    moved = [(max(x, start) + shift, min(y, start + width) + shift) for x, y in spans
             if x < start + width and y > start]
    return head + text[start:start + width] + tail, moved


def _as_text(value: float | str) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _counts(reasons: dict[str, int]) -> str:
    return ", ".join(f"{r} ({n:,})" for r, n in sorted(reasons.items()))
