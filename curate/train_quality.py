"""Training the `quality.classifier` model: hashed n-grams + logistic regression.

Why this model: docs/algorithms.md 5.6 tier (a), DCLM's fastText recipe without the
fastText dependency. Hashed word 1-2-grams and char 3-5-grams need no vocabulary, train
in seconds to minutes on 2 cores, score thousands of docs/s, and the model is a sparse
weight vector (saved without pickle). An embedding head would be ~100x slower to apply
(`embed` runs ~25 docs/s here) for a task where surface cues carry most of the signal.

Evaluation is held out: texts are split by a hash of their normalised content, so exact
(and whitespace/case) duplicates never straddle train and test, and the split is the same
on every run for a given seed. The saved model is the one fitted on the train split, so
the reported accuracy and AUC describe exactly what is saved.
"""

from __future__ import annotations

import glob
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from operators.quality.classifier import FeatureConfig, QualityModel, featurize


def read_texts(pattern: str, text_column: str = "text") -> tuple[list[str], dict]:
    """Non-empty texts of every Parquet/JSONL file matching `pattern` (sorted by path)."""
    files = sorted(glob.glob(pattern, recursive=True))
    if not files:
        raise FileNotFoundError(f"no files match '{pattern}'")
    texts: list[str] = []
    skipped = 0
    for f in files:
        if f.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
            import pyarrow.json as pj

            table = pj.read_json(f)
        else:
            table = pq.read_table(f, columns=[text_column])
        if text_column not in table.column_names:
            raise ValueError(f"{f}: no column '{text_column}' (has {table.column_names})")
        col = table[text_column]
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise ValueError(f"{f}: column '{text_column}' is {col.type}, not text")
        values = col.to_pylist()
        good = [t for t in values if t is not None and t.strip()]
        skipped += len(values) - len(good)
        texts.extend(good)
    return texts, {"files": len(files), "texts": len(texts), "skipped_empty": skipped}


def _in_test(texts: list[str], fraction: float, seed: int) -> np.ndarray:
    """Deterministic split by a hash of the whitespace/case-normalised text."""
    keys = pc.utf8_lower(pc.replace_substring_regex(pa.array(texts, pa.string()), r"\s+", " "))
    hashes = np.fromiter((xxhash.xxh64_intdigest(t.strip().encode(), seed)
                          for t in keys.to_pylist()), np.uint64, len(texts))
    return (hashes % np.uint64(1_000_000)) < np.uint64(int(round(fraction * 1_000_000)))


def train_quality(positive_glob: str, negative_glob: str, out_path: str,
                  text_column: str = "text", *, test_fraction: float = 0.2, seed: int = 0,
                  max_docs_per_class: int | None = None, C: float = 4.0,
                  n_features: int = 2**20, word_ngrams: tuple[int, int] = (1, 2),
                  char_ngrams: tuple[int, int] = (3, 5), max_chars: int = 10_000) -> dict:
    """Train a positive-vs-negative quality classifier and save it to `out_path`.

    positive_glob / negative_glob: Parquet or JSONL files (globs) of good / bad texts in
    `text_column`. Held-out `test_fraction` (split by content hash, `seed`) gives the
    reported metrics. `max_docs_per_class` caps each class (a seeded random sample).
    `C` is the inverse L2 strength of the logistic regression. Returns a report dict:
    out_path, n_train/n_test (per class), accuracy, auc, seconds, and the inputs.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    start = time.perf_counter()
    pos, pos_info = read_texts(positive_glob, text_column)
    neg, neg_info = read_texts(negative_glob, text_column)
    rng = np.random.default_rng(seed)
    if max_docs_per_class:
        pos = [pos[i] for i in sorted(rng.permutation(len(pos))[:max_docs_per_class])]
        neg = [neg[i] for i in sorted(rng.permutation(len(neg))[:max_docs_per_class])]
    texts = pos + neg
    y = np.concatenate([np.ones(len(pos), np.int8), np.zeros(len(neg), np.int8)])
    test = _in_test(texts, test_fraction, seed)
    for name, mask in (("train", ~test), ("test", test)):
        if len(set(y[mask].tolist())) < 2:
            raise ValueError(f"the {name} split lacks one class ({int(y[mask].sum())} positive "
                             f"of {int(mask.sum())}); give more texts of each class")
    cfg = FeatureConfig(n_features=n_features, word_ngrams=tuple(word_ngrams),
                        char_ngrams=tuple(char_ngrams), max_chars=max_chars)
    x = featurize(texts, cfg)
    train_idx, test_idx = np.flatnonzero(~test), np.flatnonzero(test)
    x_train = x[train_idx]
    # Fit on the hashed columns that occur in training only (a few % of 2 * n_features):
    # same optimum, since unseen features get zero weight, and several times faster.
    used = np.unique(x_train.indices)
    clf = LogisticRegression(C=C, max_iter=2000, class_weight="balanced")
    clf.fit(x_train[:, used], y[train_idx])
    coef = np.zeros(x.shape[1], np.float32)
    coef[used] = clf.coef_.ravel()
    model = QualityModel(cfg, coef, float(clf.intercept_[0]), {})
    prob = model.score([texts[i] for i in test_idx])
    y_test = y[test_idx]
    report = {
        "out_path": str(Path(out_path)),
        "positive": {"glob": positive_glob, **pos_info, "used": len(pos)},
        "negative": {"glob": negative_glob, **neg_info, "used": len(neg)},
        "text_column": text_column,
        "n_train": {"positive": int(y[train_idx].sum()),
                    "negative": int(len(train_idx) - y[train_idx].sum())},
        "n_test": {"positive": int(y_test.sum()), "negative": int(len(y_test) - y_test.sum())},
        "accuracy": round(float(accuracy_score(y_test, prob >= 0.5)), 4),
        "auc": round(float(roc_auc_score(y_test, prob)), 4),
        "params": {"C": C, "test_fraction": test_fraction, "seed": seed,
                   "max_docs_per_class": max_docs_per_class},
    }
    report["seconds"] = round(time.perf_counter() - start, 2)
    model.manifest = {"trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "report": report, "versions": _versions()}
    model.save(out_path)
    return report


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("scikit-learn", "numpy", "scipy")}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Train a quality.classifier MODEL")
    ap.add_argument("--positive", required=True)
    ap.add_argument("--negative", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--text-column", default="text")
    args = ap.parse_args()
    print(json.dumps(train_quality(args.positive, args.negative, args.out, args.text_column),
                     indent=2))
