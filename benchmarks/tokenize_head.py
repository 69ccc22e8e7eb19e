"""Tokenizing whole texts vs only their heads (operators/embed/truncation.py), CPU-ms per doc.

    .venv/bin/python benchmarks/tokenize_head.py [--docs 2000] [--max-tokens 256] [--repeats 3]

Samples `--docs` documents (seed 0) from the sample corpus, read in place, and times the
packaged MiniLM tokenizer truncating whole texts against `HeadTokenizer`, alternately,
`--repeats` times each; checks that both give the same ids. Prints the best of the repeats.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from operators.embed.backends import default_model_path  # noqa: E402
from operators.embed.truncation import HEAD_CHARS_PER_TOKEN, load_tokenizer  # noqa: E402

SAMPLES = REPO.parent / "shared" / "data" / "samples"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    texts = [t for f in sorted((SAMPLES / "corpus").glob("*.parquet"))
             for t in pq.read_table(f, columns=["text"])["text"].to_pylist()]
    pick = np.random.default_rng(0).choice(len(texts), min(args.docs, len(texts)), replace=False)
    sample = [texts[i] for i in pick]
    whole = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    whole.no_padding()
    whole.enable_truncation(args.max_tokens)
    head = load_tokenizer(default_model_path(), args.max_tokens)

    cpu_ms = {"whole": [], "head": []}
    for _ in range(args.repeats):
        for name, tok in (("whole", whole), ("head", head)):
            start = time.process_time()
            encodings = tok.encode_batch(sample)
            cpu_ms[name].append((time.process_time() - start) / len(sample) * 1000)
            ids = [e.ids for e in encodings]
            if name == "whole":
                reference = ids
            elif ids != reference:
                raise SystemExit("head tokenization differs from whole-text tokenization")
    lengths = np.array([len(t) for t in sample])
    limit = HEAD_CHARS_PER_TOKEN * args.max_tokens
    print(f"{len(sample)} docs, mean {lengths.mean():.0f} chars, "
          f"{(lengths > limit).mean():.1%} over {limit}; ids identical")
    for name, ms in cpu_ms.items():
        print(f"{name}: {min(ms):.2f} CPU-ms/doc best of {args.repeats} "
              f"({', '.join(f'{x:.2f}' for x in ms)})")


if __name__ == "__main__":
    main()
