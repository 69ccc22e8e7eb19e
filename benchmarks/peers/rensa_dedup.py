"""rensa 0.5 RMinHash + RMinHashLSH near-dup removal.

    python benchmarks/peers/rensa_dedup.py 'DIR/*.parquet' OUT [--threshold 0.8]
        [--no-verify | --exact]

Shingles as for datasketch (`\\w+` tokens, word 5-grams, as `str`); `RMinHash(128, seed=42)`
`.update(shingles)` per document; `RMinHashLSH(threshold, 128, num_bands=16)`; every
document queried; a candidate counts when the signature estimate `m.jaccard(other)` is
>= threshold (rensa's README deduplication recipe; `--no-verify`: every LSH candidate;
`--exact`: the exact Jaccard of the two shingle sets, as dedup.minhash verifies);
union-find; the first row of each component is kept. One process, one core.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import (  # noqa: E402
    Timer,
    UnionFind,
    option,
    read_corpus,
    shingles,
    write_dups,
)


def main() -> None:
    pattern, out = sys.argv[1], Path(sys.argv[2])
    threshold = option("--threshold", 0.8)
    verify = "--no-verify" not in sys.argv
    exact = "--exact" in sys.argv
    from rensa import RMinHash, RMinHashLSH

    t = Timer()
    with t.stage("read"):
        ids, texts = read_corpus(pattern)
    with t.stage("signatures"):
        sigs, sets = [], []
        for text in texts:
            m = RMinHash(num_perm=128, seed=42)
            grams = shingles(text)
            m.update(grams)
            sigs.append(m)
            if exact:
                sets.append(set(grams))
    with t.stage("lsh_insert"):
        lsh = RMinHashLSH(threshold=threshold, num_perm=128, num_bands=16)
        for i, m in enumerate(sigs):
            lsh.insert(i, m)
    with t.stage("lsh_query_verify_unionfind"):
        uf = UnionFind(len(ids))
        candidates = kept_edges = 0
        for i, m in enumerate(sigs):
            for j in lsh.query(m):
                if j <= i:
                    continue
                candidates += 1
                if exact:
                    a, b = sets[i], sets[j]
                    same = len(a & b) / max(len(a | b), 1) >= threshold
                else:
                    same = not verify or m.jaccard(sigs[j]) >= threshold
                if same:
                    kept_edges += 1
                    uf.union(i, j)
    with t.stage("write"):
        removed = write_dups(out, ids, uf)
    t.write(out, docs=len(ids), removed=removed, candidate_pairs=candidates,
            verified_pairs=kept_edges, verify="exact" if exact else verify)


if __name__ == "__main__":
    main()
