"""datasketch 2.0 MinHash + MinHashLSH near-dup removal (the library's documented usage).

    python benchmarks/peers/datasketch_dedup.py 'DIR/*.parquet' OUT [--threshold 0.8]

Shingles: `\\w+` tokens of the lower-cased text, word 5-grams as UTF-8 bytes;
`MinHash(num_perm=128).update_batch`; `MinHashLSH(threshold, num_perm=128)` (datasketch
picks its own bands x rows: 9 x 13 at 0.8) filled with an insertion session; every
document queried; every LSH candidate is a duplicate (datasketch has no verification
step); union-find; the first row of each component is kept. One process, one core.
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
    from datasketch import MinHash, MinHashLSH

    t = Timer()
    with t.stage("read"):
        ids, texts = read_corpus(pattern)
    with t.stage("signatures"):
        sigs = []
        for text in texts:
            m = MinHash(num_perm=128)
            m.update_batch([s.encode("utf-8") for s in shingles(text)])
            sigs.append(m)
    with t.stage("lsh_insert"):
        lsh = MinHashLSH(threshold=threshold, num_perm=128)
        with lsh.insertion_session() as session:
            for i, m in enumerate(sigs):
                session.insert(i, m)
    with t.stage("lsh_query_unionfind"):
        uf = UnionFind(len(ids))
        candidates = 0
        for i, m in enumerate(sigs):
            for j in lsh.query(m):
                if j != i:
                    candidates += 1
                    uf.union(i, j)
    with t.stage("write"):
        removed = write_dups(out, ids, uf)
    t.write(out, docs=len(ids), removed=removed, candidate_pairs_directed=candidates,
            bands_rows=[lsh.b, lsh.r])


if __name__ == "__main__":
    main()
