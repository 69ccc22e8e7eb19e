"""Which removal rule, not which search, sets the low end of the twin curve.

    .venv/bin/python benchmarks/semantic_rules.py [--devset /tmp/curate-semantic-devset-400]
        [--cache /tmp/sem400/embed-cache]

Exact all-pairs cosine on the dev set's vectors (the `embed` cache `semantic_twins.py`
filled), rows in input order, two greedy rules at each eps of `semantic_twins.EPS`:
- `any_earlier`: a row is removed when its cosine to *any* earlier row exceeds 1 - eps
  (the SemDeDup paper's rule, section 3.1: the max over the upper triangle), pointing to
  that row, chains followed to a kept row;
- `kept_only`: removed when its cosine to an earlier *kept* row exceeds 1 - eps (semhash's
  greedy self-deduplication);
- `margin`: `any_earlier` with curate's default margin, each pair's bar lowered by
  margin x (1 - c), c the two rows' best cosine to a third row over *all* rows
  (`semantic_math.cluster_duplicates` on the whole set in input order).
No clustering is involved, so the differences are the rules alone (and, against the
operator's curve, what comparing within clusters costs). Recall at
equal false removal as in `semantic_twins.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import semantic_twins as st  # noqa: E402

from operators.dedup.semantic import SemanticParams  # noqa: E402
from operators.dedup.semantic_math import cluster_duplicates  # noqa: E402


def resolve(s: np.ndarray, eps: float, kept_only: bool) -> np.ndarray:
    """Root row of every row (itself when kept) under one rule, rows in input order."""
    n = len(s)
    root, kept = np.arange(n), np.ones(n, bool)
    for i in range(1, n):
        sims = np.where(kept[:i], s[i, :i], -np.inf) if kept_only else s[i, :i]
        j = int(np.argmax(sims))
        if sims[j] > 1 - eps:
            kept[i], root[i] = False, j
    while not np.array_equal(root[root], root):
        root = root[root]
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devset", type=Path, default=Path("/tmp/curate-semantic-devset-400"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/sem400/embed-cache"))
    ap.add_argument("--variants", default="torch-head,static")
    args = ap.parse_args()
    dev = st.load_devset(args.devset)
    out = {}
    for name in args.variants.split(","):
        x = st.embed(dev, name, st.variants()[name], args.cache)[0]
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        s = x @ x.T
        out[name] = {}
        margin = SemanticParams.model_fields["margin"].default
        rules = {"any_earlier": lambda e, s=s: resolve(s, e, False),
                 "kept_only": lambda e, s=s: resolve(s, e, True),
                 "margin": lambda e, x=x, m=margin: cluster_duplicates(x, e, margin=m)[3]}
        for rule, fn in rules.items():
            points = [{"eps": e, **st.score(dev, [dev.ids[k] for k in fn(e)])}
                      for e in st.EPS]
            out[name][rule] = {f"{lv:.1%}": st.recall_at(points, lv) for lv in st.LEVELS}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
