"""quality.c4 on hand-made texts: each line rule, each document rule, order, rewriting."""

from __future__ import annotations

import pyarrow as pa
import pytest

from operators.base import Context
from operators.quality.c4 import C4Params, C4Quality

GOOD = "This line is a perfectly fine sentence."


def page(*extra: str, good: int = 5) -> str:
    return "\n".join([GOOD] * good + list(extra))


def run(texts: list[str], **params):
    op = C4Quality(C4Params(**params), Context(text_column="text"))
    res = op.process(pa.table({"text": texts}))
    return res.reason.to_pylist(), {k: v.to_pylist() for k, v in res.signals.items()}, res


def test_min_sentences_boundary():
    reasons, sig, res = run([page(good=5), page(good=4)])
    assert sig["sentences"] == [5, 4]
    assert reasons == [None, "c4.min_sentences"]
    assert res.detail.to_pylist()[1].startswith("sentences=4 < min_num_sentences=5")


def test_sentences_are_counted_inside_lines():
    reasons, sig, _ = run(["One is here. Two is here! Three is here? Four, e.g. this. Five it is."])
    assert sig["sentences"] == [5]
    assert reasons == [None]


def test_terminal_punctuation_line_rule():
    text = page("no punctuation at the end", "ends with a colon:", "trailing dots here...",
                'a quoted ending here"', "an apostrophe ending here'", good=3)
    reasons, sig, _ = run([text])
    assert sig["lines_no_terminal_punct"] == [3]
    assert sig["kept_lines"] == [5]
    assert reasons == [None]


def test_terminal_punctuation_off_keeps_such_lines():
    _, sig, _ = run([page("no punctuation at the end", good=1)], filter_no_terminal_punct=False)
    assert sig["lines_no_terminal_punct"] == [0]
    assert sig["kept_lines"] == [2]


def test_min_words_per_line_boundary():
    reasons, sig, res = run([page("Two words.", "Three words here.")])
    assert sig["lines_few_words"] == [1]
    assert sig["kept_lines"] == [6]
    assert res.table["text"].to_pylist() == [page("Three words here.")]


def test_long_word_boundary():
    ok = "Here is " + "x" * 999 + "."  # the word with its full stop: 1000 characters
    bad = "Here is " + "y" * 1000 + "."
    _, sig, res = run([page(ok, bad)])
    assert sig["lines_long_word"] == [1]
    assert res.table["text"].to_pylist() == [page(ok)]


def test_javascript_and_policy_lines_are_removed():
    text = page("Please enable JavaScript to continue.", "Read our Privacy Policy today.",
                "This site uses cookies, sorry.")
    reasons, sig, res = run([text])
    assert sig["lines_javascript"] == [1]
    assert sig["lines_policy"] == [2]
    assert reasons == [None]
    assert res.table["text"].to_pylist() == [page()]


def test_lorem_ipsum_drops_the_document():
    reasons, sig, res = run([page("Lorem ipsum dolor sit amet.")])
    assert reasons == ["c4.lorem_ipsum"]
    assert sig["lorem_ipsum"] == [1]
    assert "lorem ipsum" in res.detail.to_pylist()[0]


def test_document_rules_only_see_lines_that_passed_earlier_rules():
    # no terminal punctuation, too few words, or a javascript line: the line goes first
    texts = [page("lorem ipsum dolor sit"), page("Lorem ipsum."),
             page("The {javascript} thing works.")]
    reasons, sig, _ = run(texts)
    assert reasons == [None, None, None]
    assert sig["lorem_ipsum"] == [0, 0, 0] and sig["curly_bracket"] == [0, 0, 0]


def test_curly_bracket_drops_the_document():
    reasons, sig, _ = run([page("Use the {x} placeholder here.")])
    assert reasons == ["c4.curly_bracket"]
    assert sig["curly_bracket"] == [1]


def test_first_document_rule_by_line_order_names_the_reason():
    reasons, _, _ = run([page("Use the {x} placeholder here.", "Lorem ipsum dolor sit."),
                         page("Lorem ipsum dolor sit.", "Use the {x} placeholder here.")])
    assert reasons == ["c4.curly_bracket", "c4.lorem_ipsum"]


def test_citations_are_removed_before_the_punctuation_check():
    _, _, res = run([page("A cited claim is here.[1]", "Edited text is here.[edit]")])
    assert res.table["text"].to_pylist() == [page("A cited claim is here.",
                                                  "Edited text is here.")]


def test_splitlines_boundaries():
    text = "\r\n".join([GOOD] * 3) + "\u2028" + GOOD + "\x0b" + GOOD + "\r\n"
    reasons, sig, _ = run([text])
    assert sig["lines"] == [5]
    assert reasons == [None]


def test_annotate_changes_nothing():
    texts = [page("no punctuation"), page("Lorem ipsum dolor sit.")]
    reasons, sig, res = run(texts, action="annotate")
    assert reasons == [None, None]
    assert res.table["text"].to_pylist() == texts
    assert set(sig) == set(C4Quality.signal_keys)


def test_clean_lines_off_keeps_text():
    texts = [page("no punctuation")]
    _, _, res = run(texts, clean_lines=False)
    assert res.table["text"].to_pylist() == texts


def test_disabled_rules():
    reasons, _, _ = run([page("Lorem ipsum dolor sit.", "A {b} c d.", good=1)],
                        filter_lorem_ipsum=False, filter_curly_bracket=False,
                        min_num_sentences=None)
    assert reasons == [None]


def test_defaults_and_registry():
    p = C4Params()
    assert (p.min_words_per_line, p.max_word_length, p.min_num_sentences) == (3, 1000, 5)
    assert p.filter_no_terminal_punct and p.remove_citations and p.action == "drop"
    assert C4Quality.name == "quality.c4" and C4Quality.kind == "map"


@pytest.mark.parametrize("text", ["", "\n\n", "   "])
def test_empty_texts(text):
    reasons, sig, _ = run([text])
    assert reasons == ["c4.min_sentences"]
    assert sig["kept_lines"] == [0]


def test_bad_words_rule_matches_whole_listed_entries(tmp_path):
    words = tmp_path / "bad.txt"
    words.write_text("darn\nheck no\n\n  Blast \n", encoding="utf-8")
    texts = [
        page("Darn, this line has a bad word."),        # listed, any case, before a comma
        page("This line says heck no to it."),           # listed phrase
        page("This line says heck yes to it."),          # phrase half only
        page("Darning socks is not listed here."),       # prefix of a longer word
        page("A sentence that ends in blast"),           # at the very end of the text
        page("Über_darn is one word with the underscore."),
        page("Ödarn is one word in Unicode."),
    ]
    reasons, sig, res = run(texts, bad_words_file=str(words))
    assert sig["bad_words"] == [1, 1, 0, 0, 1, 0, 0]
    assert reasons == ["c4.bad_words", "c4.bad_words", None, None, "c4.bad_words", None, None]
    assert str(words) in res.detail.to_pylist()[0]


def test_bad_words_rule_is_off_without_a_list_and_checks_the_file(tmp_path):
    reasons, sig, _ = run([page("Darn, this line would be a bad word.")])
    assert reasons == [None] and sig["bad_words"] == [None]
    (tmp_path / "empty.txt").write_text("\n")
    _, sig, _ = run([page("Darn.")], bad_words_file=str(tmp_path / "empty.txt"))
    assert sig["bad_words"] == [0]
    with pytest.raises(ValueError, match="missing.txt"):
        C4Params(bad_words_file=str(tmp_path / "missing.txt"))


def test_bad_words_annotate_records_without_dropping(tmp_path):
    words = tmp_path / "bad.txt"
    words.write_text("darn\n")
    reasons, sig, _ = run([page("Darn it all.")], bad_words_file=str(words), action="annotate")
    assert reasons == [None] and sig["bad_words"] == [1]
