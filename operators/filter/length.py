"""filter.length: keep documents whose character and word counts are within bounds."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from operators.base import BatchResult, MapOperator, Params

_NULL = pa.scalar(None, pa.string())


class LengthParams(Params):
    min_chars: int = Field(0, ge=0, description="drop texts with fewer characters")
    max_chars: int | None = Field(None, ge=1, description="drop texts with more characters")
    min_words: int = Field(0, ge=0, description="drop texts with fewer whitespace-separated words")
    max_words: int | None = Field(None, ge=1, description="drop texts with more words")

    @model_validator(mode="after")
    def _ordered(self) -> LengthParams:
        for lo, hi in (("min_chars", "max_chars"), ("min_words", "max_words")):
            top = getattr(self, hi)
            if top is not None and top < getattr(self, lo):
                raise ValueError(f"{hi} ({top}) is below {lo} ({getattr(self, lo)})")
        return self


def word_counts(text: pa.Array) -> pa.Array:
    """Number of maximal runs of non-whitespace characters per text."""
    return pc.count_substring_regex(text, r"\S+")


class LengthFilter(MapOperator):
    name = "filter.length"
    doc = "Drop texts outside [min, max] characters or words; records both counts."
    Params = LengthParams
    signal_keys = {"chars": "num", "words": "num"}
    reasons = ("too_short", "too_long")

    def process(self, batch: pa.Table) -> BatchResult:
        p: LengthParams = self.params
        text = batch[self.ctx.text_column].combine_chunks()
        chars = pc.utf8_length(text)
        words = word_counts(text)
        # Checked in this order; the first failing bound names the reason.
        checks = [
            (pc.less(chars, p.min_chars), "too_short", "chars", "<", "min_chars", p.min_chars),
            (pc.less(words, p.min_words), "too_short", "words", "<", "min_words", p.min_words),
        ]
        if p.max_chars is not None:
            checks.append((pc.greater(chars, p.max_chars), "too_long", "chars", ">", "max_chars",
                           p.max_chars))
        if p.max_words is not None:
            checks.append((pc.greater(words, p.max_words), "too_long", "words", ">", "max_words",
                           p.max_words))
        reason = detail = pa.nulls(batch.num_rows, pa.string())
        for failed, code, measure, op, bound, value in reversed(checks):
            counts = chars if measure == "chars" else words
            text_detail = pc.binary_join_element_wise(
                f"{measure}=", pc.cast(counts, pa.string()), f" {op} {bound}={value}", ""
            )
            reason = pc.if_else(failed, code, reason)
            detail = pc.if_else(failed, text_detail, detail)
        signals = {"chars": pc.cast(chars, pa.float64()), "words": pc.cast(words, pa.float64())}
        return BatchResult(batch, reason, detail, signals)
