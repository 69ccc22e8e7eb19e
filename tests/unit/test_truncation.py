"""Cutting long texts before tokenizing gives the same word-pieces as tokenizing them whole."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from operators.embed.backends import default_model_path
from operators.embed.truncation import HEAD_CHARS_PER_TOKEN, HeadTokenizer, head, load_tokenizer
from tests.conftest import SAMPLES

MAX = 64  # small, so that texts of a few hundred characters already overflow


def whole(max_tokens: int) -> Tokenizer:
    """The reference: the same tokenizer truncating whole texts."""
    tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_tokens)
    return tok


def ids(encodings) -> list[list[int]]:
    return [e.ids for e in encodings]


def test_minilm_tokenizer_is_cut():
    assert load_tokenizer(default_model_path(), MAX).cuts


def test_long_sample_documents_match_whole_text_tokenization():
    texts = [t for f in sorted((SAMPLES / "corpus").glob("*.parquet"))
             for t in pq.read_table(f, columns=["text"])["text"].to_pylist()]
    long = [t for t in texts if len(t) > HEAD_CHARS_PER_TOKEN * 256][:300]
    assert len(long) >= 100
    for max_tokens in (MAX, 256):
        got = load_tokenizer(default_model_path(), max_tokens).encode_batch(long)
        assert ids(got) == ids(whole(max_tokens).encode_batch(long))


@pytest.mark.parametrize("text", [
    "word " * 400,                                     # plain overflow
    "x" * 3000,                                        # no whitespace: not cut
    "a" * 100 + " " + "b" * 2000 + " tail",           # head is one short word: redone
    "é ü ñ " * 200 + "日本語のテキスト " * 100,          # accents (NFD) and CJK characters
    "token " * 40 + " " * 3000 + "late words here",   # spaces run past the limit: redone
    "short text",                                      # under the limit: untouched
    "",
])
def test_edge_cases_match_whole_text_tokenization(text):
    assert ids(load_tokenizer(default_model_path(), MAX).encode_batch([text])) == \
        ids(whole(MAX).encode_batch([text]))


def test_head_cuts_at_the_last_whitespace_before_the_limit():
    assert head("aaa bbb\nccc ddd", 10) == "aaa bbb"
    assert head("aaaaaaaaaaaa", 5) == "aaaaaaaaaaaa"
    assert head("short", 10) == "short"


def test_tokenizers_with_non_local_pre_tokenization_are_never_cut():
    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    assert not HeadTokenizer(tok, MAX).cuts
