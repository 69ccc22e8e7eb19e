"""quality.gopher: the Gopher quality and repetition heuristics (Rae et al. 2021, App. A).

Quality rules (App. A.1.1 "Quality filters"; rule definitions as in datatrove
`gopher_quality_filter.py`):
  word_count        words that contain a non-symbol character, in [50, 100 000]
  mean_word_length  mean length of those words, in [3, 10]
  symbol_ratio      "#" per word and "..."/"…" per word, each <= 0.1 (words = all tokens)
  bullet_lines      share of lines starting with "•" or "-" (after leading space) <= 0.9
  ellipsis_lines    share of lines ending with "..." or "…" (before trailing space) <= 0.3
  alpha_words       share of words with an alphabetic character >= 0.8
  stop_words        at least 2 of {the, be, to, of, and, that, have, with} present
Repetition rules (Table A1; datatrove `gopher_repetition_filter.py`):
  dup_para_frac / dup_para_char_frac   repeated paragraphs (split on \\n\\n+): <= 0.3 of
                                       paragraphs, <= 0.2 of characters
  dup_line_frac / dup_line_char_frac   repeated lines (split on \\n+): <= 0.3 / <= 0.2
  top_{2,3,4}gram   characters in the most frequent word n-gram <= 0.20 / 0.18 / 0.16
  dup_{5..10}gram   characters in repeated word n-grams <= 0.15 .. 0.10
Character fractions are over the whole text, whitespace included (as datatrove does).
Words come from `words.py` (spaCy's English tokenizer rules, as datatrove uses).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from operators.base import BatchResult, MapOperator
from operators.quality.common import (
    INLINE_SPACE,
    LINE_BREAK,
    QualityParams,
    Rule,
    duplicate_stats,
    ratio,
    result,
    segment_ids,
    split_flat,
    text_column,
)
from operators.quality.ngrams import ngram_fractions
from operators.quality.words import STOP_WORDS, VOCAB, Tokens, per_doc_sum

TOP_NS = (2, 3, 4)
DUP_NS = (5, 6, 7, 8, 9, 10)
_TOP_DEFAULTS = {2: 0.20, 3: 0.18, 4: 0.16}  # Table A1
_DUP_DEFAULTS = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}  # Table A1


def _frac(default: float, what: str):
    return Field(default, ge=0, description=f"drop if {what} exceeds this (null: rule off)")


class GopherParams(QualityParams):
    quality: bool = Field(True, description="apply the quality rules (App. A.1.1)")
    repetition: bool = Field(True, description="apply the repetition rules (Table A1)")
    # --- quality (App. A.1.1) ---
    min_words: int | None = Field(50, ge=0, description="drop if fewer non-symbol words")
    max_words: int | None = Field(100_000, ge=1, description="drop if more non-symbol words")
    min_mean_word_length: float | None = Field(
        3, ge=0, description="drop if non-symbol words are shorter on average")
    max_mean_word_length: float | None = Field(
        10, ge=0, description="drop if non-symbol words are longer on average")
    max_symbol_word_ratio: float | None = _frac(0.1, "'#' per word, or '...'/'…' per word,")
    max_bullet_lines_ratio: float | None = _frac(0.9, "the share of lines starting with a bullet")
    max_ellipsis_lines_ratio: float | None = _frac(
        0.3, "the share of lines ending with an ellipsis")
    min_alpha_words_ratio: float | None = Field(
        0.8, ge=0, le=1, description="drop if fewer words contain an alphabetic character")
    min_stop_words: int | None = Field(
        2, ge=0, description="drop if fewer distinct stop words occur (case-sensitive)")
    stop_words: tuple[str, ...] = Field(STOP_WORDS, description="the stop-word list")
    # --- repetition (Table A1) ---
    max_dup_para_frac: float | None = _frac(0.3, "the share of repeated paragraphs")
    max_dup_para_char_frac: float | None = _frac(0.2, "the character share of repeated paragraphs")
    max_dup_line_frac: float | None = _frac(0.3, "the share of repeated lines")
    max_dup_line_char_frac: float | None = _frac(0.2, "the character share of repeated lines")
    max_top_2gram_frac: float | None = _frac(0.20, "the character share of the top 2-gram")
    max_top_3gram_frac: float | None = _frac(0.18, "the character share of the top 3-gram")
    max_top_4gram_frac: float | None = _frac(0.16, "the character share of the top 4-gram")
    max_dup_5gram_frac: float | None = _frac(0.15, "the character share of repeated 5-grams")
    max_dup_6gram_frac: float | None = _frac(0.14, "the character share of repeated 6-grams")
    max_dup_7gram_frac: float | None = _frac(0.13, "the character share of repeated 7-grams")
    max_dup_8gram_frac: float | None = _frac(0.12, "the character share of repeated 8-grams")
    max_dup_9gram_frac: float | None = _frac(0.11, "the character share of repeated 9-grams")
    max_dup_10gram_frac: float | None = _frac(0.10, "the character share of repeated 10-grams")

    @model_validator(mode="after")
    def _ordered(self) -> GopherParams:
        for lo, hi in (("min_words", "max_words"),
                       ("min_mean_word_length", "max_mean_word_length")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and b < a:
                raise ValueError(f"{hi} ({b}) is below {lo} ({a})")
        if not (self.quality or self.repetition):
            raise ValueError("enable at least one of quality, repetition")
        return self


QUALITY_SIGNALS = ("word_count", "mean_word_length", "hash_ratio", "ellipsis_ratio",
                   "bullet_lines_frac", "ellipsis_lines_frac", "alpha_words_frac", "stop_words")
REPETITION_SIGNALS = (
    ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac")
    + tuple(f"top_{n}gram_frac" for n in TOP_NS) + tuple(f"dup_{n}gram_frac" for n in DUP_NS))


def quality_rules(p: GopherParams) -> list[Rule]:
    return [
        Rule("gopher.word_count", "word_count", "<", "min_words", p.min_words),
        Rule("gopher.word_count", "word_count", ">", "max_words", p.max_words),
        Rule("gopher.mean_word_length", "mean_word_length", "<", "min_mean_word_length",
             p.min_mean_word_length),
        Rule("gopher.mean_word_length", "mean_word_length", ">", "max_mean_word_length",
             p.max_mean_word_length),
        Rule("gopher.symbol_ratio", "hash_ratio", ">", "max_symbol_word_ratio",
             p.max_symbol_word_ratio),
        Rule("gopher.symbol_ratio", "ellipsis_ratio", ">", "max_symbol_word_ratio",
             p.max_symbol_word_ratio),
        Rule("gopher.bullet_lines", "bullet_lines_frac", ">", "max_bullet_lines_ratio",
             p.max_bullet_lines_ratio),
        Rule("gopher.ellipsis_lines", "ellipsis_lines_frac", ">", "max_ellipsis_lines_ratio",
             p.max_ellipsis_lines_ratio),
        Rule("gopher.alpha_words", "alpha_words_frac", "<", "min_alpha_words_ratio",
             p.min_alpha_words_ratio),
        Rule("gopher.stop_words", "stop_words", "<", "min_stop_words", p.min_stop_words),
    ]


def repetition_rules(p: GopherParams) -> list[Rule]:
    rules = [
        Rule("gopher.empty", "chars", "<", "min_chars", 1),
        Rule("gopher.dup_para_frac", "dup_para_frac", ">", "max_dup_para_frac",
             p.max_dup_para_frac),
        Rule("gopher.dup_para_char_frac", "dup_para_char_frac", ">", "max_dup_para_char_frac",
             p.max_dup_para_char_frac),
        Rule("gopher.dup_line_frac", "dup_line_frac", ">", "max_dup_line_frac",
             p.max_dup_line_frac),
        Rule("gopher.dup_line_char_frac", "dup_line_char_frac", ">", "max_dup_line_char_frac",
             p.max_dup_line_char_frac),
    ]
    for n in TOP_NS:
        rules.append(Rule(f"gopher.top_{n}gram", f"top_{n}gram_frac", ">",
                          f"max_top_{n}gram_frac", getattr(p, f"max_top_{n}gram_frac")))
    for n in DUP_NS:
        rules.append(Rule(f"gopher.dup_{n}gram", f"dup_{n}gram_frac", ">",
                          f"max_dup_{n}gram_frac", getattr(p, f"max_dup_{n}gram_frac")))
    return rules


def quality_signals(text: pa.Array, tokens: Tokens, p: GopherParams) -> dict[str, np.ndarray]:
    n = len(text)
    ids, off = tokens.ids, tokens.offsets
    length = VOCAB.prop("length")[ids]
    non_symbol = VOCAB.prop("symbol")[ids] == 0
    n_tokens = np.diff(off).astype(np.float64)
    n_words = per_doc_sum(non_symbol.astype(np.int64), off).astype(np.float64)
    word_chars = per_doc_sum(np.where(non_symbol, length, 0), off)
    n_alpha = per_doc_sum(VOCAB.prop("alpha")[ids], off)
    # distinct stop words present: unique (text, stop word) pairs among the tokens
    stop_ids = np.array([VOCAB.ids[w] for w in p.stop_words if w in VOCAB.ids], np.int64)
    is_stop = np.isin(ids, stop_ids)
    doc = tokens.doc_index[is_stop]
    pairs = np.unique(doc * (len(VOCAB.ids) + 1) + ids[is_stop])
    stop_count = np.bincount(pairs // (len(VOCAB.ids) + 1), minlength=n).astype(np.float64)

    hashes = pc.count_substring(text, "#").to_numpy(zero_copy_only=False)
    ellipses = (pc.count_substring(text, "...").to_numpy(zero_copy_only=False)
                + pc.count_substring(text, "…").to_numpy(zero_copy_only=False))
    # lines as str.splitlines(): a final line break does not open an empty line
    chars = pc.utf8_length(text).to_numpy(zero_copy_only=False)
    breaks = pc.count_substring_regex(text, LINE_BREAK).to_numpy(zero_copy_only=False)
    ends_open = ~pc.match_substring_regex(text, f"(?:{LINE_BREAK})$").to_numpy(
        zero_copy_only=False)
    n_lines = np.where(chars > 0, breaks + ends_open, 0)
    # (count_substring_regex re-anchors "^" after every match, so the first line is
    # checked on its own)
    bullet = f"{INLINE_SPACE}*[•-]"
    bullets = (pc.count_substring_regex(text, f"(?:{LINE_BREAK}){bullet}").to_numpy(
        zero_copy_only=False) + pc.match_substring_regex(text, "^" + bullet).to_numpy(
        zero_copy_only=False))
    ellipsis_lines = pc.count_substring_regex(
        text, rf"(?:\.\.\.|…){INLINE_SPACE}*(?:{LINE_BREAK}|$)").to_numpy(zero_copy_only=False)
    return {
        "word_count": n_words,
        "mean_word_length": ratio(word_chars, n_words),
        "hash_ratio": ratio(hashes, n_tokens),
        "ellipsis_ratio": ratio(ellipses, n_tokens),
        "bullet_lines_frac": ratio(bullets, n_lines),
        "ellipsis_lines_frac": ratio(ellipsis_lines, n_lines),
        "alpha_words_frac": ratio(n_alpha, n_tokens),
        "stop_words": stop_count,
    }


def repetition_signals(text: pa.Array, tokens: Tokens, p: GopherParams
                       ) -> dict[str, np.ndarray]:
    n = len(text)
    chars = pc.utf8_length(text).to_numpy(zero_copy_only=False).astype(np.float64)
    paras, poff = split_flat(pc.utf8_trim_whitespace(text), r"\n{2,}")
    para_dups, para_dup_chars = duplicate_stats(paras, segment_ids(poff), n)
    lines, loff = split_flat(text, r"\n+")
    line_dups, line_dup_chars = duplicate_stats(lines, segment_ids(loff), n)
    token_len = VOCAB.prop("length")[tokens.ids]
    # every n-gram signal is computed even when its rule is off, so it can be queried
    with np.errstate(divide="ignore", invalid="ignore"):
        grams = ngram_fractions(tokens, token_len, chars, TOP_NS, DUP_NS)
    out = {
        "chars": chars,
        "dup_para_frac": ratio(para_dups, np.diff(poff)),
        "dup_para_char_frac": ratio(para_dup_chars, chars),
        "dup_line_frac": ratio(line_dups, np.diff(loff)),
        "dup_line_char_frac": ratio(line_dup_chars, chars),
    }
    empty = chars == 0
    for (kind, k), values in grams.items():
        out[f"{kind}_{k}gram_frac"] = np.where(empty, np.nan, values)
    return out


class GopherQuality(MapOperator):
    name = "quality.gopher"
    doc = ("Gopher (MassiveText) heuristics: quality rules (length, word shape, symbols, "
           "stop words) and repetition rules (duplicate lines/paragraphs/n-grams).")
    Params = GopherParams
    signal_keys = {k: "num" for k in QUALITY_SIGNALS + REPETITION_SIGNALS}
    reasons = (
        "gopher.word_count", "gopher.mean_word_length", "gopher.symbol_ratio",
        "gopher.bullet_lines", "gopher.ellipsis_lines", "gopher.alpha_words",
        "gopher.stop_words", "gopher.empty", "gopher.dup_para_frac",
        "gopher.dup_para_char_frac", "gopher.dup_line_frac", "gopher.dup_line_char_frac",
        *(f"gopher.top_{n}gram" for n in TOP_NS), *(f"gopher.dup_{n}gram" for n in DUP_NS))

    def process(self, batch: pa.Table) -> BatchResult:
        p: GopherParams = self.params
        text = text_column(batch, self.ctx.text_column)
        signals: dict[str, np.ndarray] = {}
        rules: list[Rule] = []
        tokens = VOCAB.tokenize(text)
        # Quality rules first, then repetition: the order of App. A (FineWeb runs
        # repetition first; the kept set is the same, only the reason named differs).
        if p.quality:
            signals |= quality_signals(text, tokens, p)
            rules += quality_rules(p)
        if p.repetition:
            signals |= repetition_signals(text, tokens, p)
            rules += repetition_rules(p)
            if p.quality:  # an empty text already fails word_count
                rules = [r for r in rules if r.reason != "gopher.empty"]
        return result(batch, p.action, rules, signals, keys=self.signal_keys)
