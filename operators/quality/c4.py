"""quality.c4: the C4 clean-up heuristics (Raffel et al. 2020, Sec. 2.2; reference
implementation TFDS `c4_utils.py`, rule order and details as in datatrove `c4_filters.py`).

Each line (str.splitlines(), stripped) goes through these line rules in order; a line that
fails one is removed from the text:
  1. a word (whitespace-separated) longer than 1000 characters;
  (Wikipedia citation markers "[1]", "[edit]", "[citation needed]" are then deleted)
  2. no terminal punctuation: the line does not end in . ? ! " ' or ends in "...";
  3. fewer than 3 words;
  4. (document rule) "lorem ipsum" anywhere in the line -> the document is dropped;
  5. "javascript" in the line;
  6. (document rule) a curly bracket "{" in the line -> the document is dropped;
  7. a cookie/terms-of-use policy phrase in the line.
The document is dropped when the kept lines hold fewer than 5 sentences (spaCy
Sentencizer rules, see `words.sentence_counts`). Otherwise, with `clean_lines`, the text
is replaced by its kept lines joined with "\\n", as C4 does. Document rules only see lines
that survived the line rules before them, exactly as in the reference.
Bad words (C4 Sec. 2.2: pages with any word of the "List of Dirty, Naughty, Obscene or
Otherwise Bad Words" were removed): off unless `bad_words_file` names a word list, one
word or phrase per line. The list is not bundled (its terms are the user's choice, and
datatrove keeps this rule in a separate filter); a document fails `c4.bad_words` when
its lower-cased text holds a listed entry between non-word characters or the text's ends,
as TFDS' C4 pattern does (a Unicode letter, digit or '_' counts as a word character).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from operators.base import BatchResult, MapOperator
from operators.quality.common import (
    LINE_BREAK,
    QualityParams,
    Rule,
    result,
    segment_ids,
    split_flat,
    text_column,
)
from operators.quality.words import VOCAB, sentence_counts

CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
          "use cookies")
# Whitespace that spaCy keeps as a token (anything but one plain space between words); such
# a token counts as a sentence start after a full stop, so it is kept for counting.
_WS_NOT_SPACE = (r"\t\n\x0b\x0c\r\x1c-\x1f\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
                 r"\x{202f}\x{205f}\x{3000}")
_WS_TOKEN = f"[ {_WS_NOT_SPACE}]{{2,}}|[{_WS_NOT_SPACE}]"


class C4Params(QualityParams):
    filter_no_terminal_punct: bool = Field(
        True, description="remove lines not ending in . ? ! \" ' (or ending in '...'); "
                          "FineWeb turns this off")
    min_words_per_line: int | None = Field(
        3, ge=0, description="remove lines with fewer whitespace-separated words (null: off)")
    max_word_length: int | None = Field(
        1000, ge=1, description="remove lines holding a longer word (null: off)")
    remove_citations: bool = Field(True, description="delete [1], [edit], [citation needed]")
    filter_lorem_ipsum: bool = Field(True, description="drop documents with 'lorem ipsum'")
    filter_javascript: bool = Field(True, description="remove lines mentioning 'javascript'")
    filter_curly_bracket: bool = Field(True, description="drop documents with a '{'")
    filter_policy: bool = Field(True, description="remove lines with cookie/terms-of-use phrases")
    min_num_sentences: int | None = Field(
        5, ge=0, description="drop documents with fewer sentences in their kept lines (null: off)")
    clean_lines: bool = Field(
        True, description="replace kept documents' text by their kept lines (drop mode only)")
    bad_words_file: str | None = Field(
        None, description="drop documents holding any word or phrase listed in this file "
                          "(one per line, e.g. the LDNOOBW list; not bundled; null: off)")

    @field_validator("bad_words_file")
    @classmethod
    def _readable(cls, path: str | None) -> str | None:
        if path is not None:
            bad_words_pattern(path)  # fail at validation time, naming the file
        return path


@cache
def bad_words_pattern(path: str) -> str | None:
    """One RE2 pattern matching any listed entry as a whole word (None: empty list)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"bad_words_file {path}: {exc}") from exc
    words = sorted({w.strip().lower() for w in lines if w.strip()})
    if not words:
        return None
    edge = r"[^\p{L}\p{N}_]"
    return f"(?:{edge}|^)(?:" + "|".join(re.escape(w) for w in words) + f")(?:{edge}|$)"


def _contains(arr: pa.Array, needle: str) -> np.ndarray:
    return pc.match_substring(arr, needle).to_numpy(zero_copy_only=False)


class C4Quality(MapOperator):
    name = "quality.c4"
    doc = ("C4 heuristics: remove lines without terminal punctuation, short lines, "
           "javascript/policy lines; drop documents with lorem ipsum, '{' or < 5 sentences "
           "(and, given a word list, bad words).")
    Params = C4Params
    signal_keys = {
        "lines": "num", "kept_lines": "num", "sentences": "num",
        "lines_long_word": "num", "lines_no_terminal_punct": "num", "lines_few_words": "num",
        "lines_javascript": "num", "lines_policy": "num",
        "lorem_ipsum": "num", "curly_bracket": "num", "bad_words": "num",
    }
    reasons = ("c4.lorem_ipsum", "c4.curly_bracket", "c4.min_sentences", "c4.bad_words")

    def process(self, batch: pa.Table) -> BatchResult:
        p: C4Params = self.params
        text = text_column(batch, self.ctx.text_column)
        n = len(text)
        lines, off = split_flat(text, LINE_BREAK)
        # str.splitlines() opens no line after a final break (nor for an empty text)
        last = off[1:] - 1
        drop_last = pc.equal(pc.utf8_length(lines), 0).to_numpy(zero_copy_only=False)[last]
        if drop_last.any():
            keep = np.ones(len(lines), dtype=bool)
            keep[last[drop_last]] = False
            lines = lines.filter(pa.array(keep))
            off = np.concatenate([[0], np.cumsum(np.diff(off) - drop_last)])
        owner = segment_ids(off)
        m = len(lines)
        stripped = pc.utf8_trim_whitespace(lines)

        words = pc.utf8_split_whitespace(stripped)
        word_len = pc.utf8_length(words.flatten()).to_numpy(zero_copy_only=False)
        word_owner = segment_ids(words.offsets.to_numpy().astype(np.int64))
        n_words = np.bincount(word_owner, weights=word_len > 0, minlength=m)
        longest = np.zeros(m)
        np.maximum.at(longest, word_owner, word_len)

        line = pc.replace_substring_regex(stripped, CITATION, "") if p.remove_citations \
            else stripped
        lower = pc.utf8_lower(line)
        false = np.zeros(m, dtype=bool)
        long_word = longest > p.max_word_length if p.max_word_length is not None else false
        if p.filter_no_terminal_punct:
            ends = pc.match_substring_regex(line, r"[.?!\"']$").to_numpy(zero_copy_only=False)
            no_punct = ~ends | pc.ends_with(line, "...").to_numpy(zero_copy_only=False)
        else:
            no_punct = false
        few = n_words < p.min_words_per_line if p.min_words_per_line is not None else false
        lorem = _contains(lower, "lorem ipsum") if p.filter_lorem_ipsum else false
        js = _contains(lower, "javascript") if p.filter_javascript else false
        curly = _contains(line, "{") if p.filter_curly_bracket else false
        policy = (pc.match_substring_regex(lower, "|".join(POLICY)).to_numpy(
            zero_copy_only=False) if p.filter_policy else false)

        # the rules in order, each seeing only the lines the earlier ones let through
        alive = ~long_word
        rm_punct = alive & no_punct
        alive &= ~no_punct
        rm_few = alive & few
        alive &= ~few
        lorem_hit = alive & lorem
        alive &= ~lorem
        rm_js = alive & js
        alive &= ~js
        curly_hit = alive & curly
        alive &= ~curly
        rm_policy = alive & policy
        kept = alive & ~policy

        def per_doc(mask: np.ndarray) -> np.ndarray:
            return np.bincount(owner[mask], minlength=n).astype(np.float64)

        kept_lines = line.filter(pa.array(kept))
        kept_off = np.concatenate([[0], np.cumsum(per_doc(kept).astype(np.int64))])
        if p.min_num_sentences is not None:
            spaced = pc.replace_substring_regex(kept_lines, _WS_TOKEN, " \x00 ")
            per_line = sentence_counts(VOCAB.tokenize(spaced))
            sentences = np.bincount(owner[kept], weights=per_line, minlength=n)
        else:
            sentences = np.full(n, np.nan)

        # the reference stops at the first line that trips a document rule
        doc_hit = lorem_hit | curly_hit
        first_is_lorem = np.zeros(n)
        first_is_curly = np.zeros(n)
        if doc_hit.any():
            hit_rows = np.flatnonzero(doc_hit)
            docs, first = np.unique(owner[hit_rows], return_index=True)
            at = hit_rows[first]
            first_is_lorem[docs] = lorem_hit[at]
            first_is_curly[docs] = ~lorem_hit[at]
        signals = {
            "lines": per_doc(np.ones(m, dtype=bool)),
            "kept_lines": per_doc(kept),
            "sentences": sentences,
            "lines_long_word": per_doc(long_word),
            "lines_no_terminal_punct": per_doc(rm_punct),
            "lines_few_words": per_doc(rm_few),
            "lines_javascript": per_doc(rm_js),
            "lines_policy": per_doc(rm_policy),
            "lorem_ipsum": np.minimum(per_doc(lorem_hit), 1),
            "curly_bracket": np.minimum(per_doc(curly_hit), 1),
            "bad_words": self._bad_words(text),
            "_lorem_first": first_is_lorem,
            "_curly_first": first_is_curly,
        }
        rules = [
            Rule("c4.lorem_ipsum", "_lorem_first", "flag", "filter_lorem_ipsum",
                 1 if p.filter_lorem_ipsum else None,
                 "'lorem ipsum' in a line that passed the line rules (filter_lorem_ipsum)"),
            Rule("c4.curly_bracket", "_curly_first", "flag", "filter_curly_bracket",
                 1 if p.filter_curly_bracket else None,
                 "'{' in a line that passed the line rules (filter_curly_bracket)"),
            Rule("c4.min_sentences", "sentences", "<", "min_num_sentences", p.min_num_sentences),
            Rule("c4.bad_words", "bad_words", "flag", "bad_words_file",
                 1 if p.bad_words_file else None,
                 f"a word or phrase listed in {p.bad_words_file}"),
        ]
        why = pc.binary_join_element_wise(
            "; lines=", _num(signals["lines"]), " kept=", _num(signals["kept_lines"]),
            " removed: no_terminal_punct=", _num(signals["lines_no_terminal_punct"]),
            " few_words=", _num(signals["lines_few_words"]),
            " long_word=", _num(signals["lines_long_word"]),
            " javascript=", _num(signals["lines_javascript"]),
            " policy=", _num(signals["lines_policy"]), "")
        res = result(batch, p.action, rules, signals, {"c4.min_sentences": why},
                     keys=self.signal_keys)
        if p.clean_lines and p.action == "drop":
            joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(kept_off, pa.int32()),
                                                             kept_lines), "\n")
            cleaned = pc.if_else(res.kept_mask, pc.utf8_trim_whitespace(joined), text)
            col = self.ctx.text_column
            res.table = batch.set_column(batch.schema.get_field_index(col), col,
                                         cleaned.cast(batch.schema.field(col).type))
        return res


    def _bad_words(self, text: pa.Array) -> np.ndarray:
        """1.0 where the text holds a listed bad word, 0.0 if not, NaN when the rule is off."""
        path = self.params.bad_words_file
        pattern = bad_words_pattern(path) if path else None
        if path is None:
            return np.full(len(text), np.nan)
        if pattern is None:
            return np.zeros(len(text))
        hit = pc.match_substring_regex(pc.utf8_lower(text), pattern)
        return pc.fill_null(hit, False).to_numpy(zero_copy_only=False).astype(np.float64)


def _num(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype(np.int64)).cast(pa.string())
