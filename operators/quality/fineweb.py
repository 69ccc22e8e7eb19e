"""quality.fineweb: FineWeb's extra heuristics (Penedo et al. 2024, Sec. 3.3 "Additional
quality filtering"; definitions and defaults as in datatrove `fineweb_quality_filter.py`,
which `examples/fineweb.py` runs with its defaults).

Lines are the non-blank lines of text.split("\\n"), not stripped. A document is dropped when
  line_punct_ratio   the share of lines ending in sentence-final punctuation < 0.12
  short_line_ratio   the share of lines of <= 30 characters > 0.67
  char_dup_ratio     characters in repeated lines (every copy after the first) divided by
                     the characters of the text without newlines > 0.01
  list_ratio         newlines per word (words as in `words.py`) > 0.3
The FineWeb write-up quotes 0.1 for the duplicated-line rule; datatrove's default, which the
published pipeline uses, is 0.01, and that is our default (set `char_duplicates_ratio`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from operators.base import BatchResult, MapOperator
from operators.quality.common import (
    QualityParams,
    Rule,
    duplicate_stats,
    ratio,
    result,
    segment_ids,
    split_flat,
    text_column,
)
from operators.quality.words import SENTENCE_END, VOCAB


class FineWebParams(QualityParams):
    line_punct_thr: float | None = Field(
        0.12, ge=0, le=1, description="drop if fewer lines end in terminal punctuation (null: off)")
    line_punct_exclude_zero: bool = Field(
        False, description="spare documents where no line at all ends in punctuation")
    stop_chars: tuple[str, ...] = Field(
        tuple(sorted(SENTENCE_END)), description="characters that count as terminal punctuation")
    short_line_length: int = Field(30, ge=0, description="a line this long or shorter is short")
    short_line_thr: float | None = Field(
        0.67, ge=0, le=1, description="drop if more lines are short (null: off)")
    char_duplicates_ratio: float | None = Field(
        0.01, ge=0, description="drop if more characters sit in repeated lines (null: off)")
    new_line_ratio: float | None = Field(
        0.3, ge=0, description="drop if there are more newlines per word (null: off)")


class FineWebQuality(MapOperator):
    name = "quality.fineweb"
    doc = ("FineWeb heuristics: share of lines ending in punctuation, share of short lines, "
           "characters in duplicated lines, newlines per word.")
    Params = FineWebParams
    signal_keys = {"lines": "num", "line_punct_ratio": "num", "short_line_ratio": "num",
                   "char_dup_ratio": "num", "list_ratio": "num"}
    reasons = ("fineweb.empty", "fineweb.line_punct_ratio", "fineweb.short_line_ratio",
               "fineweb.char_dup_ratio", "fineweb.list_ratio")

    def process(self, batch: pa.Table) -> BatchResult:
        p: FineWebParams = self.params
        text = text_column(batch, self.ctx.text_column)
        n = len(text)
        lines, off = split_flat(text, "\n", regex=False)
        nonblank = pc.not_equal(pc.utf8_trim_whitespace(lines), "").to_numpy(
            zero_copy_only=False)
        lines = lines.filter(pa.array(nonblank))
        owner = segment_ids(off)[nonblank]
        n_lines = np.bincount(owner, minlength=n).astype(np.float64)

        chars = "".join(sorted(set(p.stop_chars)))
        ends = pc.match_substring_regex(lines, "[" + _re2_class(chars) + "]$").to_numpy(
            zero_copy_only=False)
        punct = ratio(np.bincount(owner[ends], minlength=n), n_lines)
        if p.line_punct_exclude_zero:
            punct = np.where(punct == 0, np.nan, punct)  # NaN never fails
        length = pc.utf8_length(lines).to_numpy(zero_copy_only=False)
        short = ratio(np.bincount(owner[length <= p.short_line_length], minlength=n), n_lines)
        _, dup_chars = duplicate_stats(lines, owner, n, length)
        newlines = pc.count_substring(text, "\n").to_numpy(zero_copy_only=False)
        body = pc.utf8_length(text).to_numpy(zero_copy_only=False) - newlines
        n_words = np.diff(VOCAB.tokenize(text).offsets)
        list_ratio = ratio(newlines, n_words)
        list_ratio = np.where((n_words == 0) & (newlines > 0), np.inf, list_ratio)
        signals = {
            "lines": n_lines,
            "line_punct_ratio": punct,
            "short_line_ratio": short,
            "char_dup_ratio": ratio(dup_chars, body),
            "list_ratio": list_ratio,
        }
        rules = [
            Rule("fineweb.empty", "lines", "<", "min_lines", 1),
            Rule("fineweb.line_punct_ratio", "line_punct_ratio", "<", "line_punct_thr",
                 p.line_punct_thr),
            Rule("fineweb.short_line_ratio", "short_line_ratio", ">", "short_line_thr",
                 p.short_line_thr),
            Rule("fineweb.char_dup_ratio", "char_dup_ratio", ">", "char_duplicates_ratio",
                 p.char_duplicates_ratio),
            Rule("fineweb.list_ratio", "list_ratio", ">", "new_line_ratio", p.new_line_ratio),
        ]
        return result(batch, p.action, rules, signals, keys=self.signal_keys)


def _re2_class(chars: str) -> str:
    """Characters escaped for use inside an RE2 [...] class."""
    return "".join("\\" + c if c in "\\]^-[" else c for c in chars)
