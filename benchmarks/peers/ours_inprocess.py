"""Our dedup.minhash, in this process without Ray (pipelines.inprocess.run_operators).

    python benchmarks/peers/ours_inprocess.py 'DIR/*.parquet' OUT [--params '{threshold: 0.8}']
    python benchmarks/peers/ours_inprocess.py 'DIR/*.parquet' OUT --signatures-only

Reads the shards with the pipeline's own reader (the same batches `curate run` makes),
runs the operator's stages on them in order, and writes OUT/dups.parquet (dropped id,
keeper id) from the rows' drop reason and detail. `--signatures-only` times just
`minhash_signatures.text_signatures` over all texts (the signature stage, single-threaded).
The process pins itself to one CPU, so the figures are one core's (the operator would
otherwise verify candidates on every core it may use).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import Timer, option  # noqa: E402


def main() -> None:
    import os

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    pattern, out = sys.argv[1], Path(sys.argv[2])
    params = option("--params", "{threshold: 0.8, num_perm: 128, ngram: 5, unit: word}")
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.recipe import parse_recipe
    from pipelines import columns as C
    from pipelines.inprocess import run_operators
    from pipelines.reader import read_shard
    from pipelines.shards import discover

    t = Timer()
    if "--signatures-only" in sys.argv:
        from _common import read_corpus

        from operators.dedup.minhash_signatures import text_signatures
        with t.stage("read"):
            _, texts = read_corpus(pattern)
        with t.stage("signatures"):
            sigs = text_signatures(texts, 128, 1, 5, "word")
        t.write(out, docs=len(texts), shape=list(sigs.shape))
        return
    loaded = parse_recipe(f"name: bench\ninput: {{path: '{pattern}'}}\noutput: {{path: o}}\n"
                          f"steps:\n  - op: dedup.minhash\n    params: {params}\n")
    with t.stage("read"):
        batches = [b for s in discover(pattern, "auto", "text", "id")
                   for b in read_shard(s, "text", "id", 8_000_000, 5_000)]
    metrics: dict = {}
    with t.stage("operator"):
        result = pa.concat_tables(run_operators(batches, loaded.operators, metrics))
    with t.stage("write"):
        gone = result.filter(pa.array(np.asarray(result[C.REASON].is_valid())))
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": gone["id"].cast(pa.string()),
                                 "kept_id": gone[C.DETAIL].cast(pa.string())}),
                       out / "dups.parquet")
    t.write(out, docs=result.num_rows, removed=gone.num_rows, metrics=metrics.get(1, {}))
    print(json.dumps(metrics.get(1, {})))


if __name__ == "__main__":
    main()
