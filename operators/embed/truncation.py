"""The model's fast tokenizer, keeping each text's first `max_tokens` word-pieces, without
tokenizing the rest of a long text.

Tokenizing costs ~1 us per character on the dev box, whole texts included even though
only the first 256 word-pieces are kept: a 10k-character web page spends ~10 ms there,
half its forward pass in bf16. On 2,000 sample-corpus documents (mean 1,179 characters,
12.7% over 2,048) the cut takes tokenizing from 1.14 to 0.81 CPU-ms per document
(benchmarks/tokenize_head.py).

For BERT-style tokenizers (per-character normaliser, pre-tokenizer splitting at whitespace
and punctuation) a word's word-pieces do not depend on the text after it, so a long text
is first cut at a whitespace before HEAD_CHARS_PER_TOKEN * max_tokens characters. When the
head alone still overflows `max_tokens`, its first `max_tokens` word-pieces are the full
text's; when it does not (very long words, runs of spaces), the full text is tokenized
again. The ids are identical to tokenizing whole texts either way
(tests/unit/test_truncation.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

# 8 characters per word-piece: English averages ~4.5 with this vocabulary, so the head
# nearly always overflows and the second pass is rare.
HEAD_CHARS_PER_TOKEN = 8
# Components whose output for a word does not depend on later text.
LOCAL_NORMALIZERS = {None, "BertNormalizer", "Lowercase", "NFD", "NFC", "StripAccents"}
LOCAL_PRE_TOKENIZERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}


class HeadTokenizer:
    """`encode_batch(texts)` -> encodings truncated to `max_tokens` (specials included)."""

    def __init__(self, tokenizer, max_tokens: int) -> None:
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_tokens)
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        spec = json.loads(tokenizer.to_str())
        normalizer = (spec.get("normalizer") or {}).get("type")
        pre_tokenizer = (spec.get("pre_tokenizer") or {}).get("type")
        self.cuts = normalizer in LOCAL_NORMALIZERS and pre_tokenizer in LOCAL_PRE_TOKENIZERS

    def encode_batch(self, texts: Sequence[str]) -> list:
        texts = list(texts)
        if not self.cuts:
            return self.tokenizer.encode_batch(texts)
        limit = HEAD_CHARS_PER_TOKEN * self.max_tokens
        heads = [head(t, limit) for t in texts]
        encs = self.tokenizer.encode_batch(heads)
        redo = [i for i, (t, h, e) in enumerate(zip(texts, heads, encs, strict=True))
                if len(h) < len(t) and not e.overflowing]
        for i, enc in zip(redo, self.tokenizer.encode_batch([texts[i] for i in redo]),
                          strict=True):
            encs[i] = enc
        return encs


def head(text: str, limit: int) -> str:
    """`text` cut at its last whitespace before `limit` characters (whole if none)."""
    if len(text) <= limit:
        return text
    cut = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit), text.rfind("\t", 0, limit))
    return text[:cut] if cut > 0 else text


def load_tokenizer(path: Path, max_tokens: int) -> HeadTokenizer:
    """The `tokenizer.json` in `path`, truncating to `max_tokens`."""
    from tokenizers import Tokenizer

    return HeadTokenizer(Tokenizer.from_file(str(path / "tokenizer.json")), max_tokens)
