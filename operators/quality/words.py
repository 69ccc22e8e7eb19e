"""English words of a batch of Arrow texts, for the quality heuristics (quality.gopher, c4,
fineweb): token ids with per-token properties, and per-document sums over them.

`Vocabulary.tokenize` splits each text on whitespace and each chunk with
`word_split.split_chunk` (spaCy's English tokenizer rules, as datatrove uses; see there).
Chunks repeat heavily (a batch has far fewer distinct chunks than chunks), so a chunk is
split once per distinct chunk per process (cached); everything else is vectorised.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.quality.word_split import SPECIAL_CASES, split_chunk

# --- per-token properties ------------------------------------------------------------------

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
# Sentence-final marks: ASCII plus the common CJK/fullwidth/Indic ones (spaCy Sentencizer's
# default list, abridged).
SENTENCE_END = frozenset(".!?։؟۔܀܁܂߹।॥၊။።፧፨᙮᜵᜶᠃᠉᥄᥅‼‽⁇⁈⁉⸮⸼꓿꘎꘏꛳꛷﹒﹖﹗！．？｡。")


def _is_symbol_char(c: str) -> bool:
    # Gopher's "symbol": punctuation, symbols and control characters (Unicode P*, S*, Cc).
    return unicodedata.category(c)[0] in "PS" or unicodedata.category(c) == "Cc"


@dataclass
class Tokens:
    """Words of a batch of texts, flattened: doc i owns ids[offsets[i]:offsets[i+1]]."""

    ids: np.ndarray  # int64 vocabulary ids
    offsets: np.ndarray  # int64, len n_docs + 1

    @property
    def doc_index(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


class Vocabulary:
    """Process-wide token vocabulary with per-token properties, plus the chunk cache.

    Ids are only meaningful within one `tokenize` result; the cache is dropped when it
    outgrows `max_entries`, which keeps memory bounded on long runs.
    """

    FLAGS = ("length", "symbol", "alpha", "stop", "punct", "sent_end")

    def __init__(self, max_entries: int = 2_000_000) -> None:
        self.max_entries = max_entries
        self._reset()

    def _reset(self) -> None:
        self.ids: dict[str, int] = {}
        self.chunks: dict[str, tuple[int, ...]] = {}
        self._props: dict[str, list[int]] = {k: [] for k in self.FLAGS}
        self._arrays: dict[str, np.ndarray] = {k: np.zeros(0, np.int64) for k in self.FLAGS}

    def _token_id(self, tok: str) -> int:
        i = self.ids.get(tok)
        if i is None:
            i = self.ids[tok] = len(self.ids)
            p = self._props
            p["length"].append(len(tok))
            p["symbol"].append(all(_is_symbol_char(c) for c in tok))
            p["alpha"].append(any(c.isalpha() for c in tok))
            p["stop"].append(1 << STOP_WORDS.index(tok) if tok in STOP_WORDS else 0)
            p["punct"].append(all(unicodedata.category(c)[0] == "P" for c in tok))
            p["sent_end"].append(tok in SENTENCE_END)
        return i

    def chunk_ids(self, chunk: str) -> tuple[int, ...]:
        got = self.chunks.get(chunk)
        if got is None:
            if (chunk.isalpha() or chunk.isdigit()) and chunk not in SPECIAL_CASES:
                got = (self._token_id(chunk),)
            else:
                got = tuple(self._token_id(t) for t in split_chunk(chunk))
            self.chunks[chunk] = got
        return got

    def prop(self, name: str) -> np.ndarray:
        arr = self._arrays[name]
        vals = self._props[name]
        if len(arr) < len(vals):
            arr = self._arrays[name] = np.concatenate(
                [arr, np.asarray(vals[len(arr):], dtype=np.int64)])
        return arr

    def tokenize(self, text: pa.Array) -> Tokens:
        """Words of every text (null texts have none)."""
        if len(self.ids) > self.max_entries or len(self.chunks) > self.max_entries:
            self._reset()
        chunks = pc.utf8_split_whitespace(pc.fill_null(text, ""))
        chunk_offsets = chunks.offsets.to_numpy().astype(np.int64)
        flat = chunks.flatten()
        n_docs = len(text)
        if len(flat) == 0:
            return Tokens(np.zeros(0, np.int64), np.zeros(n_docs + 1, np.int64))
        enc = pc.dictionary_encode(flat).combine_chunks() if isinstance(
            flat, pa.ChunkedArray) else pc.dictionary_encode(flat)
        idx = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        uniq = enc.dictionary.to_pylist()
        per_unique = [self.chunk_ids(u) for u in uniq]
        ulen = np.fromiter((len(t) for t in per_unique), np.int64, len(per_unique))
        ustart = np.zeros(len(ulen) + 1, np.int64)
        np.cumsum(ulen, out=ustart[1:])
        uvals = np.fromiter((i for t in per_unique for i in t), np.int64, int(ustart[-1]))
        # gather each chunk occurrence's token ids in order
        occ_len = ulen[idx]
        occ_start = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(occ_len, out=occ_start[1:])
        total = int(occ_start[-1])
        within = np.arange(total, dtype=np.int64) - np.repeat(occ_start[:-1], occ_len)
        ids = uvals[np.repeat(ustart[:-1][idx], occ_len) + within]
        # utf8_split_whitespace yields "" at the edges of texts that start/end with space;
        # those chunks have no tokens, so they vanish here
        offsets = occ_start[chunk_offsets]
        return Tokens(ids, offsets)


VOCAB = Vocabulary()


def per_doc_sum(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum of `values` over each doc's slice (offsets as in `Tokens`)."""
    cs = np.zeros(len(values) + 1, dtype=np.float64 if values.dtype.kind == "f" else np.int64)
    np.cumsum(values, out=cs[1:])
    return cs[offsets[1:]] - cs[offsets[:-1]]


def per_doc_or(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Bitwise OR of `values` over each doc's slice (0 for empty docs)."""
    out = np.zeros(len(offsets) - 1, np.int64)
    nonempty = offsets[1:] > offsets[:-1]
    if values.size:
        red = np.bitwise_or.reduceat(values, offsets[:-1][nonempty])
        out[nonempty] = red
    return out


def sentence_counts(tokens: Tokens) -> np.ndarray:
    """Sentences per text as spaCy's rule-based Sentencizer splits them (the splitter
    datatrove uses for C4's sentence count): a sentence ends after a sentence-final mark
    ("." "!" "?" ...) as soon as a token that is not punctuation follows. A text with
    words has 1 + (number of such breaks) sentences; an empty text has 0."""
    ids, off = tokens.ids, tokens.offsets
    counts = np.diff(off)
    out = (counts > 0).astype(np.int64)
    if len(ids) == 0:
        return out
    is_end = VOCAB.prop("sent_end")[ids].astype(np.int64)
    is_word = VOCAB.prop("punct")[ids] == 0
    cum = np.cumsum(is_end)  # sentence-final marks up to and including each token
    words = np.flatnonzero(is_word)
    owner = tokens.doc_index[words]
    before = cum[words]  # marks before this word (a word is never a mark itself)
    # marks before the previous word of the same text, or before the text starts
    prev = np.empty_like(before)
    start = off[:-1][owner]
    prev_cum_at_start = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0)
    prev[0:1] = prev_cum_at_start[0:1]
    if len(words) > 1:
        same = owner[1:] == owner[:-1]
        prev[1:] = np.where(same, before[:-1], prev_cum_at_start[1:])
    fires = before > prev
    out += np.bincount(owner[fires], minlength=len(counts))
    return out
