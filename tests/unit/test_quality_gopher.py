"""quality.gopher on hand-made texts: every rule just inside and just outside its threshold."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pyarrow as pa
import pytest
from pydantic import ValidationError

from operators.base import Context
from operators.quality.gopher import GopherParams, GopherQuality
from operators.quality.word_split import split_chunk
from operators.quality.words import VOCAB

_ALPHABET = "bcdfghjklmnpqrstvwxz"


def words(k: int, length: int = 5, start: int = 0) -> list[str]:
    """k distinct lowercase words of `length` letters (no stop words, no vowels)."""
    combos = itertools.islice(itertools.product(_ALPHABET, repeat=length), start, start + k)
    return ["".join(c) for c in combos]


def prose(k: int, **kw) -> str:
    """k non-symbol words including two stop words, one line."""
    return " ".join(["the", "and"] + words(k - 2, **kw))


def run(texts: list[str], **params):
    op = GopherQuality(GopherParams(**params), Context(text_column="text"))
    res = op.process(pa.table({"text": texts, "id": [str(i) for i in range(len(texts))]}))
    return res.reason.to_pylist(), {k: v.to_pylist() for k, v in res.signals.items()}, res


def quality(texts, **params):
    return run(texts, repetition=False, **params)


def repetition(texts, **params):
    return run(texts, quality=False, **params)


# --- words ---------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk, tokens", [
    ("end.", ["end", "."]),
    ("don't", ["do", "n't"]),
    ("can't", ["ca", "n't"]),
    ("it's", ["it", "'s"]),
    ("well-known", ["well", "-", "known"]),
    ("e.g.,", ["e.g.", ","]),
    ("os.path.join()", ["os.path.join", "(", ")"]),
    ("f():", ["f", "(", "):"]),  # emoticon special case matched inside the chunk
    ("64MB", ["64", "MB"]),
    ("<https://example.com/a-b>.", ["<", "https://example.com/a-b", ">", "."]),
    ("``x``", ["`", "`", "x", "`", "`"]),
    ("--help", ["--help"]),
    ("...", ["..."]),
    ("U.S.", ["U.S."]),
])
def test_word_splitting_follows_spacy_english_rules(chunk, tokens):
    assert split_chunk(chunk) == tokens


def test_tokenize_offsets_per_text():
    toks = VOCAB.tokenize(pa.array(["a bc.", "", None, "  x  "]))
    assert toks.counts.tolist() == [3, 0, 0, 1]


# --- quality rules -------------------------------------------------------------------------

def test_word_count_bounds():
    reasons, sig, _ = quality([prose(50), prose(49)])
    assert reasons == [None, "gopher.word_count"]
    assert sig["word_count"] == [50, 49]
    reasons, _, _ = quality([prose(60), prose(61)], max_words=60)
    assert reasons == [None, "gopher.word_count"]


def test_symbol_only_tokens_are_not_words():
    reasons, sig, _ = quality([prose(49) + " - ; ... ()"])
    assert sig["word_count"] == [49]
    assert reasons == ["gopher.word_count"]


def test_mean_word_length_bounds():
    three = " ".join(["the", "and"] + words(48, length=3))
    shorter = " ".join(["the", "and", "zz"] + words(47, length=3))
    reasons, sig, _ = quality([three, shorter])
    assert sig["mean_word_length"] == [3.0, pytest.approx(2.98)]
    assert reasons == [None, "gopher.mean_word_length"]
    ten = " ".join(words(50, length=10))
    longer = " ".join(words(49, length=10) + words(1, length=11))
    reasons, sig, _ = quality([ten, longer], min_stop_words=None)
    assert sig["mean_word_length"] == [10.0, pytest.approx(10.02)]
    assert reasons == [None, "gopher.mean_word_length"]


def test_hash_ratio_boundary():
    # 54 words + 6 "#" = 60 tokens: 6/60 = 0.1 is allowed; one more "#" is not
    base = prose(54)
    reasons, sig, _ = quality([base + " #" * 6, base + " #" * 7])
    assert sig["hash_ratio"] == [0.1, pytest.approx(7 / 61)]
    assert reasons == [None, "gopher.symbol_ratio"]


def test_ellipsis_ratio_boundary():
    base = prose(54)
    # (ellipses first, so that the line itself does not end with one)
    reasons, sig, _ = quality(["... " * 3 + "… " * 3 + base, "... " * 4 + "… " * 3 + base])
    assert sig["ellipsis_ratio"] == [0.1, pytest.approx(7 / 61)]
    assert reasons == [None, "gopher.symbol_ratio"]


def test_bullet_lines_boundary():
    ws = words(60)
    lines = [" ".join(["the", "and"] + ws[i * 3:(i + 1) * 3]) for i in range(20)]
    ok = "\n".join(["- " + x for x in lines[:18]] + lines[18:])  # 18/20 = 0.9
    bad = "\n".join(["  • " + x for x in lines[:19]] + lines[19:])  # 19/20 = 0.95
    reasons, sig, _ = quality([ok, bad])
    assert sig["bullet_lines_frac"] == [0.9, 0.95]
    assert reasons == [None, "gopher.bullet_lines"]


def test_ellipsis_lines_boundary():
    ws = words(60)
    lines = [" ".join(["the", "and"] + ws[i * 6:(i + 1) * 6]) for i in range(10)]
    ok = "\n".join([x + "..." for x in lines[:3]] + lines[3:])  # 3/10
    bad = "\n".join([x + " … " for x in lines[:4]] + lines[4:])  # 4/10, trailing space ok
    reasons, sig, _ = quality([ok, bad])
    assert sig["ellipsis_lines_frac"] == [0.3, 0.4]
    assert reasons == [None, "gopher.ellipsis_lines"]


def test_lines_follow_splitlines():
    # "\r\n" is one break and a final break opens no line: 2 lines, 1 bullet
    _, sig, _ = quality([prose(50) + "\r\n- x\r\n"])
    assert sig["bullet_lines_frac"] == [0.5]


def test_alpha_words_boundary():
    base = " ".join(["the", "and"] + words(46))
    reasons, sig, _ = quality([base + " 123" * 12, base + " 123" * 13])
    assert sig["alpha_words_frac"] == [0.8, pytest.approx(48 / 61)]
    assert reasons == [None, "gopher.alpha_words"]


def test_stop_words_distinct_and_case_sensitive():
    two = " ".join(["the", "with"] + words(48))
    one = " ".join(["the", "the", "The", "THE"] + words(46))
    reasons, sig, _ = quality([two, one])
    assert sig["stop_words"] == [2, 1]
    assert reasons == [None, "gopher.stop_words"]


def test_first_failing_rule_names_the_reason_and_detail():
    reasons, _, res = quality([prose(10) + " #" * 20])
    assert reasons == ["gopher.word_count"]
    assert res.detail.to_pylist() == ["word_count=10 < min_words=50"]


def test_disabled_rule_does_not_fire():
    reasons, _, _ = quality([prose(10)], min_words=None)
    assert reasons == [None]


# --- repetition rules ----------------------------------------------------------------------

ALL_REP_OFF = {k: None for k in GopherParams.model_fields if k.startswith("max_dup")
               or k.startswith("max_top")}


def only(rule: str) -> dict:
    params = dict(ALL_REP_OFF)
    params.pop(rule)
    return params


def test_dup_line_frac_boundary():
    ws = words(20)
    ok = "\n".join(ws[:7] + ws[:3])  # 10 lines, 3 repeats
    bad = "\n".join(ws[:6] + ws[:4])  # 10 lines, 4 repeats
    reasons, sig, _ = repetition([ok, bad], **only("max_dup_line_frac"))
    assert sig["dup_line_frac"] == [0.3, 0.4]
    assert reasons == [None, "gopher.dup_line_frac"]


def test_dup_para_frac_boundary():
    ws = words(20)
    ok = "\n\n".join(ws[:7] + ws[:3])
    bad = "\n\n\n".join(ws[:6] + ws[:4])
    reasons, sig, _ = repetition([ok, bad], **only("max_dup_para_frac"))
    assert sig["dup_para_frac"] == [0.3, 0.4]
    assert reasons == [None, "gopher.dup_para_frac"]


def test_dup_line_char_frac_boundary():
    # one repeated 4-char line; total length 20 -> 0.2 allowed, 19 -> over
    ok = "abcd\nabcd\n" + "x" * 10
    bad = "abcd\nabcd\n" + "x" * 9
    reasons, sig, _ = repetition([ok, bad], **only("max_dup_line_char_frac"))
    assert sig["dup_line_char_frac"] == [0.2, pytest.approx(4 / 19)]
    assert reasons == [None, "gopher.dup_line_char_frac"]


def test_dup_para_char_frac_boundary():
    ok = "abcd\n\nabcd\n\n" + "x" * 8
    bad = "abcd\n\nabcd\n\n" + "x" * 7
    reasons, sig, _ = repetition([ok, bad], **only("max_dup_para_char_frac"))
    assert sig["dup_para_char_frac"] == [0.2, pytest.approx(4 / 19)]
    assert reasons == [None, "gopher.dup_para_char_frac"]


def padded(core: str, total: int) -> str:
    """`core` plus distinct filler words up to exactly `total` characters."""
    filler = iter(words(500, length=3, start=300))
    text = core
    while len(text) + 4 <= total:
        text += " " + next(filler)
    return text + " " * (total - len(text))


def test_top_2gram_boundary():
    # "xx yy" twice: 2 x 5 characters; 50 characters -> 0.2 allowed, 49 -> over
    core = "xx yy xx yy"
    reasons, sig, _ = repetition([padded(core, 50), padded(core, 49)],
                                 **only("max_top_2gram_frac"))
    assert sig["top_2gram_frac"] == [0.2, pytest.approx(10 / 49)]
    assert reasons == [None, "gopher.top_2gram"]


def test_top_ngram_without_repeats_is_the_first_ngram():
    reasons, sig, _ = repetition(["ab cd ef", "ab"], **only("max_top_2gram_frac"))
    assert sig["top_2gram_frac"] == [5 / 8, 0.0]
    assert reasons == ["gopher.top_2gram", None]


def test_top_ngram_tie_goes_to_first_seen():
    # "a bb" and "ccc d" both twice; "a bb" appears first -> 2 x 4 characters
    _, sig, _ = repetition(["a bb ccc d a bb ccc d"], **only("max_top_2gram_frac"))
    assert sig["top_2gram_frac"] == [pytest.approx(8 / 21)]


def test_dup_5gram_boundary():
    # a repeated 5-gram of 1-letter words: 5 characters (no spaces); 34 chars -> 0.147
    core = "a b c d e a b c d e"
    reasons, sig, _ = repetition([padded(core, 34), padded(core, 33)],
                                 **only("max_dup_5gram_frac"))
    assert sig["dup_5gram_frac"] == [pytest.approx(5 / 34), pytest.approx(5 / 33)]
    assert reasons == [None, "gopher.dup_5gram"]


def test_dup_ngram_overlaps_counted_once():
    # nine "a": 5-grams at 0..4 are equal; greedy walk counts the one at 1, skips to 6
    _, sig, _ = repetition(["a a a a a a a a a"], **only("max_dup_5gram_frac"))
    assert sig["dup_5gram_frac"] == [pytest.approx(5 / 17)]


def _reference(text: str, n: int, toks: list[str]):
    """Plain restatement of the two n-gram definitions, for a randomized cross-check."""
    grams = [tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)]
    top = 0.0
    if grams:
        best, count = max(Counter(grams).items(), key=lambda kv: kv[1])
        top = count * len(" ".join(best)) / len(text)
    seen, i, dup = set(), 0, 0
    while i < len(grams):
        if grams[i] in seen:
            dup += len("".join(grams[i]))
            i += n
        else:
            seen.add(grams[i])
            i += 1
    return top, dup / len(text)


def test_ngram_statistics_match_a_plain_reference():
    rng = random.Random(7)
    vocab = ["a", "bb", "ccc", "dd", "e", "ff", "the"]
    texts = [" ".join(rng.choice(vocab[: rng.randint(2, 7)]) for _ in range(rng.randint(1, 60)))
             for _ in range(60)]
    _, sig, _ = repetition(texts)
    for i, text in enumerate(texts):
        toks = text.split()
        for n in (2, 3, 4):
            assert sig[f"top_{n}gram_frac"][i] == pytest.approx(_reference(text, n, toks)[0])
        for n in (5, 6, 7, 8, 9, 10):
            assert sig[f"dup_{n}gram_frac"][i] == pytest.approx(_reference(text, n, toks)[1])


def test_empty_text_is_dropped_by_repetition_alone():
    reasons, _, _ = repetition(["", "one two three"])
    assert reasons[0] == "gopher.empty"


# --- modes, params, registry ---------------------------------------------------------------

def test_annotate_keeps_everything_and_records_signals():
    reasons, sig, res = run([prose(10), prose(60)], action="annotate")
    assert reasons == [None, None]
    assert set(sig) == set(GopherQuality.signal_keys)
    assert sig["word_count"] == [10, 60]
    assert res.table.num_rows == 2


def test_drop_mode_keeps_good_text():
    text = "\n\n".join(" ".join(["the", "and"] + words(20, start=20 * i)) for i in range(5))
    reasons, sig, _ = run([text])
    assert reasons == [None], sig


def test_defaults_are_the_published_values():
    p = GopherParams()
    assert (p.min_words, p.max_words, p.min_mean_word_length, p.max_mean_word_length) == \
        (50, 100_000, 3, 10)
    assert (p.max_symbol_word_ratio, p.max_bullet_lines_ratio, p.max_ellipsis_lines_ratio,
            p.min_alpha_words_ratio, p.min_stop_words) == (0.1, 0.9, 0.3, 0.8, 2)
    assert (p.max_dup_line_frac, p.max_dup_para_frac, p.max_dup_line_char_frac,
            p.max_dup_para_char_frac) == (0.3, 0.3, 0.2, 0.2)
    assert [getattr(p, f"max_top_{n}gram_frac") for n in (2, 3, 4)] == [0.2, 0.18, 0.16]
    assert [getattr(p, f"max_dup_{n}gram_frac") for n in range(5, 11)] == \
        [0.15, 0.14, 0.13, 0.12, 0.11, 0.10]


def test_params_are_validated():
    with pytest.raises(ValidationError):
        GopherParams(min_words=100, max_words=50)
    with pytest.raises(ValidationError):
        GopherParams(quality=False, repetition=False)
    with pytest.raises(ValidationError):
        GopherParams(bogus=1)


def test_registered_with_declared_reasons():
    assert GopherQuality.name == "quality.gopher" and GopherQuality.kind == "map"
    reasons, _, _ = run([prose(5), ""])
    assert set(reasons) <= set(GopherQuality.reasons)
