"""Whole-document embedding (`long_text: chunks`): word-piece windows and their pooling.

A text is tokenized whole (no truncation) with the encoder's own WordPiece tokenizer and
its word-pieces are cut into consecutive windows of at most `chunk_tokens` (optionally
overlapping by `overlap`). A window ends at a word boundary where it can (it is shortened to
the last word start inside it), so re-tokenizing the window's text gives back exactly its
word-pieces; only a single word longer than a window is cut inside itself. Each window is
the slice of the original text between its first and last word-piece's character offsets,
so the backends embed windows as ordinary texts through their usual batching.

More than `max_chunks` windows: `max_chunks` of them evenly spaced over the document (the
first and the last always among them) are embedded, so the cost per document is bounded
and the tail is still represented; the skipped windows' text is not embedded.

Pooling: the document vector is the mean of its window vectors weighted by each window's
word-piece count, L2-normalised. Weighted rather than plain: a 20-word tail window says
less about the document than a full 254-word window and must not pull its vector as
hard. (A window vector is itself a mean over its tokens, so this is what mean pooling
over the whole document would give if attention reached across windows.) A document
that fits in one window keeps its text as is and gets exactly its `head` vector.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from operators.embed.models import normalise


@dataclass(frozen=True)
class Windows:
    """The windows of a list of documents, in document order."""

    texts: list[str]  # each window's text (a document's own text when it fits in one)
    doc: np.ndarray  # int64 (windows,): the document each window belongs to
    tokens: np.ndarray  # int64 (windows,): word-pieces in each window, specials excluded
    doc_tokens: np.ndarray  # int64 (documents,): word-pieces in each whole document

    @property
    def per_doc(self) -> np.ndarray:
        """Windows embedded per document."""
        return np.bincount(self.doc, minlength=len(self.doc_tokens))

class Chunker:
    """Cuts texts into word-piece windows with `tokenizer` (a `tokenizers.Tokenizer`)."""

    def __init__(self, tokenizer, chunk_tokens: int, max_chunks: int, overlap: int = 0) -> None:
        if chunk_tokens < 1 or max_chunks < 1 or not 0 <= overlap < chunk_tokens:
            raise ValueError(f"chunks need chunk_tokens >= 1, max_chunks >= 1 and "
                             f"0 <= chunk_overlap < chunk_tokens, got {chunk_tokens}, "
                             f"{max_chunks}, {overlap}")
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.chunk_tokens, self.max_chunks, self.overlap = chunk_tokens, max_chunks, overlap

    def windows(self, texts: Sequence[str]) -> Windows:
        out: list[str] = []
        doc: list[int] = []
        tokens: list[int] = []
        doc_tokens = np.zeros(len(texts), np.int64)
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        for d, (text, enc) in enumerate(zip(texts, encodings, strict=True)):
            doc_tokens[d] = len(enc.ids)
            spans = self.spans(enc.word_ids)
            if len(spans) == 1:  # fits: the text itself, so its vector is the head vector
                out.append(text)
                doc.append(d)
                tokens.append(len(enc.ids))
                continue
            offsets = enc.offsets
            for start, end in spans:
                out.append(text[offsets[start][0]:offsets[end - 1][1]])
                doc.append(d)
                tokens.append(end - start)
        return Windows(out, np.asarray(doc, np.int64), np.asarray(tokens, np.int64), doc_tokens)

    def spans(self, word_ids: Sequence[int | None]) -> list[tuple[int, int]]:
        """[start, end) word-piece ranges of the embedded windows of one text."""
        n = len(word_ids)
        if n <= self.chunk_tokens:
            return [(0, n)]
        words = np.asarray([-1 if w is None else w for w in word_ids], np.int64)
        # Word-piece positions where a word starts; a window may end (exclusive) there.
        starts = np.flatnonzero(np.r_[True, words[1:] != words[:-1]])
        spans: list[tuple[int, int]] = []
        start = 0
        while True:
            end = start + self.chunk_tokens
            if end >= n:
                spans.append((start, n))
                break
            boundary = starts[np.searchsorted(starts, end, side="right") - 1]
            end = int(boundary) if boundary > start else end  # one over-long word: cut it
            spans.append((start, end))
            nxt = end - self.overlap
            if self.overlap:
                snapped = starts[np.searchsorted(starts, nxt, side="right") - 1]
                nxt = int(snapped) if snapped > start else end
            start = nxt
        if len(spans) > self.max_chunks:
            keep = np.round(np.linspace(0, len(spans) - 1, self.max_chunks)).astype(np.int64)
            spans = [spans[i] for i in keep]
        return spans


def pool_windows(vectors: np.ndarray, windows: Windows) -> np.ndarray:
    """Document vectors: the word-piece-weighted mean of each document's window vectors,
    L2-normalised; a one-window document keeps its window's vector bit for bit."""
    if not len(vectors):
        return np.zeros((0, vectors.shape[1]), np.float32)
    weights = np.maximum(windows.tokens, 1).astype(np.float32)  # an empty text still counts
    # Every document has at least one window and its windows are consecutive.
    first = np.searchsorted(windows.doc, np.arange(len(windows.doc_tokens)))
    out = normalise(np.add.reduceat(vectors * weights[:, None], first, axis=0))
    single = windows.per_doc == 1
    out[single] = vectors[first[single]]
    return out


def special_tokens(tokenizer) -> int:
    """How many special tokens ([CLS], [SEP]) `tokenizer` adds to one text."""
    return int(tokenizer.num_special_tokens_to_add(False))


def chunk_key(chunk_tokens: int | None, max_chunks: int | None, overlap: int | None) -> str:
    """What the embedding cache keys a chunked vector on besides model and backend (all
    None: a token bag's whole-text vector)."""
    return json.dumps({"long_text": "chunks", "chunk_tokens": chunk_tokens,
                       "max_chunks": max_chunks, "overlap": overlap}, sort_keys=True)
