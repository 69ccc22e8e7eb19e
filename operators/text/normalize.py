"""text.normalize: Unicode normalisation and whitespace clean-up, vectorised in Arrow."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from operators.base import STRING, BatchResult, ColumnType, MapOperator, Params


class NormalizeParams(Params):
    form: Literal["NFC", "NFKC", "NFD", "NFKD"] = Field(
        "NFC", description="Unicode normalisation form applied to the text"
    )
    collapse_spaces: bool = Field(
        True, description="replace runs of spaces/tabs inside a line with one space"
    )
    max_blank_lines: int = Field(
        1, ge=0, le=10, description="keep at most this many consecutive blank lines"
    )
    strip: bool = Field(True, description="strip whitespace at both ends of every line")
    drop_empty: bool = Field(True, description="drop rows whose text is empty afterwards")


def normalize_text(text: pa.Array, p: NormalizeParams) -> pa.Array:
    """The text transformation alone, so other operators can reuse it."""
    out = pc.utf8_normalize(text, form=p.form)
    out = pc.replace_substring_regex(out, r"\r\n?", "\n")
    if p.collapse_spaces:
        out = pc.replace_substring_regex(out, r"[^\S\n]+", " ")
    if p.strip:
        out = pc.replace_substring_regex(out, r"[^\S\n]*\n[^\S\n]*", "\n")
        out = pc.utf8_trim_whitespace(out)
    out = pc.replace_substring_regex(out, r"\n{" + str(p.max_blank_lines + 2) + ",}",
                                     "\n" * (p.max_blank_lines + 1))
    return out


class Normalize(MapOperator):
    name = "text.normalize"
    doc = "Unicode-normalise text (NFC by default) and tidy whitespace; drops empty texts."
    Params = NormalizeParams
    signal_keys = {"chars_removed": "num"}
    reasons = ("empty_text",)

    def writes(self) -> dict[str, ColumnType]:
        return {self.ctx.text_column: STRING}  # rewritten in place

    def process(self, batch: pa.Table) -> BatchResult:
        p: NormalizeParams = self.params
        col = self.ctx.text_column
        before = batch[col].combine_chunks()
        after = normalize_text(before, p)
        removed = pc.subtract(pc.utf8_length(before), pc.utf8_length(after))
        table = batch.set_column(batch.schema.get_field_index(col), col, after)
        if p.drop_empty:
            empty = pc.equal(pc.utf8_length(after), 0)
            reason = pc.if_else(empty, "empty_text", pa.scalar(None, pa.string()))
            detail = pc.if_else(empty, "no characters left after normalisation",
                                pa.scalar(None, pa.string()))
        else:
            reason = detail = pa.nulls(batch.num_rows, pa.string())
        return BatchResult(table, reason, detail, {"chars_removed": pc.cast(removed, pa.float64())})
