"""quality.fineweb on hand-made texts: every rule just inside and just outside its threshold."""

from __future__ import annotations

import pyarrow as pa
import pytest

from operators.base import Context
from operators.quality.fineweb import FineWebParams, FineWebQuality

OFF = {"line_punct_thr": None, "short_line_thr": None, "char_duplicates_ratio": None,
       "new_line_ratio": None}


def only(rule: str) -> dict:
    params = dict(OFF)
    params.pop(rule)
    return params


def distinct_lines(k: int, end: str = "", width: int = 40) -> list[str]:
    return [f"line number {i:04d} of the page ".ljust(width - len(end), "x") + end
            for i in range(k)]


def run(texts: list[str], **params):
    op = FineWebQuality(FineWebParams(**params), Context(text_column="text"))
    res = op.process(pa.table({"text": texts}))
    return res.reason.to_pylist(), {k: v.to_pylist() for k, v in res.signals.items()}, res


def test_line_punct_ratio_boundary():
    ok = distinct_lines(12, ".") + distinct_lines(88)  # 12/100 = 0.12 is allowed
    bad = distinct_lines(11, "!") + distinct_lines(89)
    reasons, sig, _ = run(["\n".join(ok), "\n".join(bad)], **only("line_punct_thr"))
    assert sig["line_punct_ratio"] == [0.12, 0.11]
    assert reasons == [None, "fineweb.line_punct_ratio"]


def test_line_punct_exclude_zero():
    reasons, _, _ = run(["\n".join(distinct_lines(5))], line_punct_exclude_zero=True,
                        **only("line_punct_thr"))
    assert reasons == [None]


def test_trailing_space_hides_punctuation_and_blank_lines_do_not_count():
    text = "\n".join(["Ends here. ", "", "   ", "Ends here!"])
    _, sig, _ = run([text])
    assert sig["lines"] == [2]
    assert sig["line_punct_ratio"] == [0.5]


def test_short_line_ratio_boundary():
    short = [f"short {i:03d}." for i in range(68)]  # <= 30 characters
    ok = "\n".join(short[:67] + distinct_lines(33, "."))  # 67/100
    bad = "\n".join(short[:68] + distinct_lines(32, "."))
    reasons, sig, _ = run([ok, bad], **only("short_line_thr"))
    assert sig["short_line_ratio"] == [0.67, 0.68]
    assert reasons == [None, "fineweb.short_line_ratio"]


def test_short_line_length_is_inclusive():
    _, sig, _ = run(["a" * 30 + "\n" + "b" * 31])
    assert sig["short_line_ratio"] == [0.5]


def test_char_dup_ratio_boundary():
    # a 10-character line repeated once; characters without newlines: 1000 -> 0.01 allowed
    rep = "Repeated.."
    body_ok = "y" * (1000 - 20)
    body_bad = "y" * (1000 - 21)
    reasons, sig, _ = run([f"{rep}\n{body_ok}\n{rep}", f"{rep}\n{body_bad}\n{rep}"],
                          **only("char_duplicates_ratio"))
    assert sig["char_dup_ratio"] == [0.01, pytest.approx(10 / 999)]
    assert reasons == [None, "fineweb.char_dup_ratio"]


def test_list_ratio_boundary():
    # 3 newlines over 10 words = 0.3 allowed; 3 over 9 is not
    ok = "a b c\nd e f\ng h\ni j"
    bad = "a b c\nd e f\ng h\ni"
    reasons, sig, _ = run([ok, bad], **only("new_line_ratio"))
    assert sig["list_ratio"] == [0.3, pytest.approx(1 / 3)]
    assert reasons == [None, "fineweb.list_ratio"]


def test_words_include_punctuation_tokens():
    _, sig, _ = run(["Hello, world.\nBye."])  # Hello , world . Bye . -> 6 words
    assert sig["list_ratio"] == [pytest.approx(1 / 6)]


@pytest.mark.parametrize("text", ["", "\n\n", " \n\t\n"])
def test_blank_text_is_empty(text):
    reasons, _, _ = run([text])
    assert reasons == ["fineweb.empty"]


def test_rule_order_names_first_failure():
    text = "\n".join(["ab"] * 10)  # no punctuation, short, duplicated, list-like
    reasons, _, res = run([text])
    assert reasons == ["fineweb.line_punct_ratio"]
    assert res.detail.to_pylist() == ["line_punct_ratio=0 < line_punct_thr=0.12"]


def test_annotate_keeps_everything_and_records_signals():
    reasons, sig, _ = run(["ab\nab", "A fine line of text that is long enough."],
                          action="annotate")
    assert reasons == [None, None]
    assert set(sig) == set(FineWebQuality.signal_keys)


def test_defaults_and_registry():
    p = FineWebParams()
    assert (p.line_punct_thr, p.short_line_thr, p.short_line_length, p.char_duplicates_ratio,
            p.new_line_ratio) == (0.12, 0.67, 30, 0.01, 0.3)
    assert "." in p.stop_chars and "?" in p.stop_chars and "!" in p.stop_chars
    assert FineWebQuality.name == "quality.fineweb" and FineWebQuality.kind == "map"
