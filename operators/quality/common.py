"""Pieces shared by the heuristic quality operators: line splitting, duplicate counting and
turning per-row measurements plus thresholds into `(reason, detail)`.

All functions take and return whole-batch arrays; nothing here loops over rows in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from operators.base import BatchResult, Params

# Python's str.splitlines() boundaries, as an RE2 pattern ("\r\n" counts once).
LINE_BREAK = r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x{85}\x{2028}\x{2029}]"
# Whitespace that str.strip() removes but that does not end a line.
INLINE_SPACE = r"[\t\x1f \x{a0}\x{1680}\x{2000}-\x{200a}\x{202f}\x{205f}\x{3000}]"

Action = Literal["drop", "annotate"]


class QualityParams(Params):
    action: Action = Field(
        "drop", description="drop: remove rows failing any rule; annotate: only record signals"
    )


def text_column(batch: pa.Table, name: str) -> pa.Array:
    """The text column as one array, nulls read as empty text."""
    col = batch[name].combine_chunks() if isinstance(batch[name], pa.ChunkedArray) else batch[name]
    if pa.types.is_large_string(col.type):
        col = col.cast(pa.string())
    return pc.fill_null(col, "")


def split_flat(text: pa.Array, pattern: str, regex: bool = True) -> tuple[pa.Array, np.ndarray]:
    """Split every text on `pattern`; returns the pieces flattened and per-text offsets."""
    parts = pc.split_pattern_regex(text, pattern) if regex else pc.split_pattern(text, pattern)
    return parts.flatten(), parts.offsets.to_numpy().astype(np.int64)


def segment_ids(offsets: np.ndarray) -> np.ndarray:
    """For flattened pieces, the index of the text each belongs to."""
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def per_text_sum(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(owner, weights=values, minlength=n) if len(owner) else np.zeros(n)


def duplicate_stats(pieces: pa.Array, owner: np.ndarray, n: int,
                    lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per text: how many pieces repeat an earlier identical piece of the same text, and
    their total length in characters (Gopher's `find_duplicates`: the first copy is not a
    duplicate, every later copy is)."""
    if len(pieces) == 0:
        return np.zeros(n), np.zeros(n)
    codes = pc.dictionary_encode(pieces).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    key = owner * (int(codes.max()) + 1) + codes
    _, first = np.unique(key, return_index=True)
    dup = np.ones(len(key), dtype=bool)
    dup[first] = False
    if lengths is None:
        lengths = pc.utf8_length(pieces).to_numpy(zero_copy_only=False)
    counts = np.bincount(owner[dup], minlength=n).astype(np.float64)
    chars = np.bincount(owner[dup], weights=lengths[dup], minlength=n)
    return counts, chars


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


@dataclass(frozen=True)
class Rule:
    """A document fails when `signal op threshold` holds (NaN never fails)."""

    reason: str  # e.g. "gopher.word_count"
    signal: str  # key in the signals dict
    op: Literal["<", ">", "flag"]
    param: str  # the parameter holding the threshold, for the detail text
    threshold: float | None  # None: rule disabled
    note: str = ""  # the detail text of a "flag" rule

    def failed(self, values: np.ndarray) -> np.ndarray:
        if self.threshold is None:
            return np.zeros(len(values), dtype=bool)
        with np.errstate(invalid="ignore"):
            if self.op == "<":
                return values < self.threshold
            if self.op == ">":
                return values > self.threshold
            return values > 0


def _fmt(values: np.ndarray) -> pa.Array:
    rounded = np.where(np.isfinite(values), np.round(values, 4), values)
    return pa.array(rounded, pa.float64()).cast(pa.string())


def decide(rules: list[Rule], signals: dict[str, np.ndarray], n: int,
           extra_detail: dict[str, pa.Array] | None = None) -> tuple[pa.Array, pa.Array]:
    """`(reason, detail)` from the first failing rule in `rules` order (null: kept).

    `extra_detail` maps a reason to per-row text appended to that reason's detail."""
    reason = detail = pa.nulls(n, pa.string())
    for rule in reversed(rules):
        if rule.threshold is None:
            continue
        values = signals[rule.signal]
        failed = rule.failed(values)
        if not failed.any():
            continue
        if rule.op == "flag":
            text = pa.array(np.full(n, rule.note or rule.signal, dtype=object), pa.string())
        else:
            text = pc.binary_join_element_wise(
                f"{rule.signal}=", _fmt(values), f" {rule.op} {rule.param}={rule.threshold:g}", "")
        if extra_detail and rule.reason in extra_detail:
            text = pc.binary_join_element_wise(text, extra_detail[rule.reason], "")
        mask = pa.array(failed)
        reason = pc.if_else(mask, rule.reason, reason)
        detail = pc.if_else(mask, text, detail)
    return reason, detail


def result(batch: pa.Table, action: Action, rules: list[Rule], signals: dict[str, np.ndarray],
           extra_detail: dict[str, pa.Array] | None = None,
           keys: dict[str, str] | None = None) -> BatchResult:
    """Assemble the operator result; in annotate mode nothing is dropped.

    Only signals named in `keys` (the operator's `signal_keys`) are returned; others are
    internal. NaN signals become nulls (no value recorded)."""
    n = batch.num_rows
    out = {k: pa.array(np.asarray(v, dtype=np.float64), pa.float64(), from_pandas=True)
           for k, v in signals.items() if keys is None or k in keys}
    if action == "annotate":
        return BatchResult.keep_all(batch, out)
    reason, detail = decide(rules, signals, n, extra_detail)
    return BatchResult(batch, reason, detail, out)
