"""The maths of `decontam.embedding`: document spans, sibling calibration, span->item search.

Pure numpy/faiss, no model: the operator (`operators.decontam.embedding`) embeds the texts.

Spans [issue 13: a leaked item is usually a small part of a long document]: a document is
searched as word windows about as long as a typical benchmark item and half as long
(half-overlapping), plus its paragraphs (a leak pasted as its own paragraph is then seen
without surrounding text). Each span keeps
its character offsets into the document, so the best span is the `span_start`/`span_end`
signal.

Calibration [issue 13: "calibrate embedding thresholds against an item's nearest sibling in
its own benchmark"]: items of one task share templates, so a document holding a *different*
item of the task sits, for any item i, at about the cosine of i's nearest sibling,
`s_sib(i)`; a rephrased or cut copy of i sits well above it. An item's threshold is
`max(min_score, max(s_sib(i), q) + margin)`, q a quantile of its benchmark's s_sib (see
`item_thresholds`), and a span flags item i when its cosine reaches it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"\S+")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")


@dataclass(frozen=True)
class Spans:
    """The spans of a list of documents, in document order."""

    doc: np.ndarray  # int64 (spans,): the document each span belongs to
    start: np.ndarray  # int64 (spans,): first character of the span in its document
    end: np.ndarray  # int64 (spans,): one past its last character

    def __len__(self) -> int:
        return len(self.doc)

    def texts(self, docs: list[str]) -> list[str]:
        return [docs[d][s:e] for d, s, e in zip(self.doc.tolist(), self.start.tolist(),
                                                  self.end.tolist(), strict=True)]


def word_offsets(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) character offsets of the whitespace-separated words of `text`."""
    bounds = np.fromiter((i for m in _WORD.finditer(text) for i in m.span()), np.int64)
    return bounds[0::2], bounds[1::2]


def window_spans(starts: np.ndarray, ends: np.ndarray, window: int, max_windows: int
                 ) -> list[tuple[int, int]]:
    """Character spans of `window`-word windows over words (`starts`, `ends`).

    Half-overlapping (stride window // 2), the last one ending at the last word; a text of
    at most `window` words is one span. Beyond `max_windows` windows their starts are spread
    evenly over the text instead (the stride grows), so a huge document costs at most
    `max_windows` windows and its whole length is still reached.
    """
    n = len(starts)
    if n == 0:
        return []
    if n <= window:
        return [(int(starts[0]), int(ends[-1]))]
    stride = max(window // 2, 1)
    first = np.arange(0, n - window, stride)
    first = np.r_[first, n - window]
    if len(first) > max_windows:
        first = np.unique(np.round(np.linspace(0, n - window, max_windows)).astype(np.int64))
    return list(zip(starts[first].tolist(), ends[first + window - 1].tolist(), strict=True))


def paragraph_spans(text: str, starts: np.ndarray, ends: np.ndarray, min_words: int,
                    max_words: int) -> list[tuple[int, int]]:
    """Character spans of the blank-line-separated paragraphs of `text` holding between
    `min_words` and `max_words` words (trimmed to their first and last word). Longer
    paragraphs are covered by the windows; shorter ones say too little to match on."""
    if len(starts) == 0:
        return []
    cuts = np.asarray([m.start() for m in _PARAGRAPH_BREAK.finditer(text)], np.int64)
    para = np.searchsorted(cuts, starts, side="right")  # paragraph of each word
    edges = np.flatnonzero(np.r_[True, para[1:] != para[:-1], True])
    out = []
    for a, b in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        if min_words <= b - a <= max_words:
            out.append((int(starts[a]), int(ends[b - 1])))
    return out


def document_spans(texts: list[str | None], window: int, max_spans: int,
                   paragraph_min_words: int, half_windows: bool = True) -> Spans:
    """Spans of every document: windows of `window` words and, with `half_windows`, of
    window // 2 words (at most `max_spans` of each size), then paragraphs of
    `paragraph_min_words` to 2 * `window` words (at most `max_spans`, evenly chosen),
    without repeats. A null or empty text has none.

    Half windows find a leak that is not its own paragraph: a question-only or cut leak
    inside a full window is mostly other text, and a window fully inside a whole leaked
    item matches it, or its half, better than one straddling its edge.
    """
    sizes = [window] + ([window // 2] if half_windows and window // 2 >= 4 else [])
    doc, start, end = [], [], []
    for d, text in enumerate(texts):
        if not text:
            continue
        ws, we = word_offsets(text)
        spans: list[tuple[int, int]] = []
        for size in sizes:
            spans += window_spans(ws, we, size, max_spans)
        paragraphs = paragraph_spans(text, ws, we, paragraph_min_words, 2 * window)
        if len(paragraphs) > max_spans:
            keep = np.round(np.linspace(0, len(paragraphs) - 1, max_spans)).astype(np.int64)
            paragraphs = [paragraphs[i] for i in np.unique(keep)]
        spans = list(dict.fromkeys(spans + paragraphs))  # first occurrence, in order
        doc += [d] * len(spans)
        start += [s for s, _ in spans]
        end += [e for _, e in spans]
    return Spans(np.asarray(doc, np.int64), np.asarray(start, np.int64),
                 np.asarray(end, np.int64))


def default_window(item_words: np.ndarray, low: int = 16, high: int = 160) -> int:
    """The window in words: the median item length, within [low, high] (high keeps a window
    inside the model's 256 word-pieces)."""
    if not len(item_words):
        return low
    return int(np.clip(np.median(item_words), low, high))


# ---- calibration ---------------------------------------------------------------------------

def sibling_cosines(vectors: np.ndarray, groups: np.ndarray, block: int = 4096) -> np.ndarray:
    """Each item's cosine to its nearest *other* item of the same group (benchmark); NaN for
    an item alone in its group. `vectors` are unit rows; exact, in blocks of `block` rows."""
    out = np.full(len(vectors), np.nan, np.float32)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        if len(members) < 2:
            continue
        x = vectors[members]
        for a in range(0, len(members), block):
            sims = x[a:a + block] @ x.T
            rows = np.arange(sims.shape[0])
            sims[rows, rows + a] = -np.inf  # not itself
            out[members[a:a + block]] = sims.max(axis=1)
    return out


def item_thresholds(sibling: np.ndarray, groups: np.ndarray, min_score: float,
                    margin: float | np.ndarray, floor_quantile: float,
                    max_score: float = np.inf) -> np.ndarray:
    """Per-item cosine a span must reach: max(min_score, max(s_sib, q) + margin), q being the
    `floor_quantile` of the nearest-sibling cosines of the item's group (benchmark).

    The floor q: an item whose nearest sibling is unusually far (it sits in a sparse corner
    of its task) still shares the task's template with any *new* item of the task, which
    lands about as close as a typical nearest sibling does; its own s_sib alone would let
    such a near miss through. An item without siblings (and a group of one) gets min_score.
    `margin` is one value or one per item. The threshold is at most `max_score`: in a
    dense benchmark (thousands of near-identical functions) siblings sit at cosine 0.95-1.0,
    which would put thresholds above 1 and hide even verbatim copies; a span that close to
    an item is a copy of it (or of its twin) whatever the siblings.
    """
    floor = np.full(len(sibling), -np.inf, np.float64)
    for g in np.unique(groups):
        members = groups == g
        known = sibling[members][~np.isnan(sibling[members])]
        if len(known):
            floor[members] = np.quantile(known.astype(np.float64), floor_quantile)
    raised = np.where(np.isnan(sibling), -np.inf, np.maximum(sibling, floor) + margin)
    return np.maximum(np.minimum(raised, max_score), min_score).astype(np.float32)


# ---- search ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DocMatches:
    """Per document: the best flagged item (-1: none) and how it was found."""

    item: np.ndarray  # int64 (docs,): index of the matched item, -1 when not flagged
    score: np.ndarray  # float32 (docs,): the span's cosine to that item (NaN: no match)
    span: np.ndarray  # int64 (docs,): index of the matching span (-1: no match)
    best_excess: np.ndarray  # float32 (docs,): max over spans of cosine - threshold (NaN: no spans)


def best_matches(span_doc: np.ndarray, cos: np.ndarray, items: np.ndarray,
                 thresholds: np.ndarray, docs: int) -> DocMatches:
    """Pick, per document, the (span, item) pair with the largest cosine above its item's
    threshold, from each span's nearest items (`cos`, `items`: (spans, k), item -1 = none).

    Ranked by excess over the threshold (cosine - threshold), not by raw cosine: a span's
    top-1 item may be a generic one with a high threshold while its second item is a clear
    match; ties go to the earlier span and lower item index, so results are deterministic.
    """
    item = np.full(docs, -1, np.int64)
    score = np.full(docs, np.nan, np.float32)
    span = np.full(docs, -1, np.int64)
    best = np.full(docs, np.nan, np.float32)
    if not len(span_doc):
        return DocMatches(item, score, span, best)
    valid = items >= 0
    excess = np.where(valid, cos - thresholds[np.maximum(items, 0)], -np.inf)
    col = np.argmax(excess, axis=1)  # first maximum: the nearer item on ties
    rows = np.arange(len(span_doc))
    per_span = excess[rows, col]
    # Best span per document: sort by (doc, -excess, span) and take each doc's first.
    order = np.lexsort((rows, -per_span, span_doc))
    firsts = order[np.r_[True, span_doc[order][1:] != span_doc[order][:-1]]]
    d = span_doc[firsts]
    best[d] = per_span[firsts]
    hit = per_span[firsts] >= 0
    item[d[hit]] = items[firsts[hit], col[firsts[hit]]]
    score[d[hit]] = cos[firsts[hit], col[firsts[hit]]]
    span[d[hit]] = firsts[hit]
    return DocMatches(item, score, span, best)


def build_index(vectors: np.ndarray, ivf_above: int, nprobe: int, seed: int):
    """A faiss inner-product index of unit item vectors: exact (IndexFlatIP) up to
    `ivf_above` items, else IVF with about 4 * sqrt(n) lists, `nprobe` of them searched."""
    import faiss

    x = np.ascontiguousarray(vectors, np.float32)
    dim = x.shape[1]
    if len(x) <= ivf_above:
        index = faiss.IndexFlatIP(dim)
    else:
        lists = int(4 * np.sqrt(len(x)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists,
                                   faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(x)
        index.nprobe = nprobe
    index.add(x)
    return index


def search(index, queries: np.ndarray, k: int, vectors: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """(cos, items) of each query's `k` nearest items, (queries, k); item -1 where the index
    holds fewer than k.

    With the item `vectors`, the candidates' cosines are recomputed pair by pair in float64
    (`exact_cosines`): faiss's own scores depend in their last bits on how many queries
    are searched together (it switches to a matrix product for larger batches), and a
    decision must not depend on how rows were batched.
    """
    k = max(1, min(k, index.ntotal))
    if not len(queries) or index.ntotal == 0:
        return (np.zeros((len(queries), k), np.float32), np.full((len(queries), k), -1, np.int64))
    queries = np.ascontiguousarray(queries, np.float32)
    cos, items = index.search(queries, k)
    items = items.astype(np.int64)
    if vectors is not None:
        cos = exact_cosines(queries, vectors, items)
    return cos, items


def exact_cosines(queries: np.ndarray, vectors: np.ndarray, items: np.ndarray) -> np.ndarray:
    """float32 (queries, k): each query's dot product with each of its candidate items,
    summed in float64 one pair at a time (the same bits whatever the batch); -inf for -1."""
    q = queries.astype(np.float64)
    cand = vectors[np.maximum(items, 0)].astype(np.float64)  # (queries, k, dim)
    cos = np.einsum("qd,qkd->qk", q, cand).astype(np.float32)
    return np.where(items >= 0, cos, -np.inf).astype(np.float32)
