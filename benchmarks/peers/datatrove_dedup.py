"""datatrove's 4-stage MinHash dedup (Signature -> Buckets -> Cluster -> Filter), local.

    /tmp/peers/datatrove-mh/bin/python benchmarks/peers/datatrove_dedup.py DIR WORK \
        [--buckets 9 --hashes 13] [--workers 2] [--glob 'part-*.parquet']

Venv: /tmp/peers/datatrove-mh (`pip install "datatrove[processing]" spacy pyarrow orjson`;
the shared /tmp/peers/datatrove lacks pyarrow and orjson, which its readers need). Uses
only datatrove's public pipeline blocks with `LocalPipelineExecutor` (2 workers; one task
per input Parquet file for stages 1 and 4, one per bucket for stage 2, one for
stage 3, as in datatrove's examples/minhash_deduplication.py). datatrove has no
threshold parameter: the LSH shape is given as buckets x hashes per bucket. The default
9 x 13 = 117 hashes is what datasketch and text-dedup pick for threshold 0.8 with 128
permutations (datatrove's own default is 14 x 8, FineWeb's). Every bucket collision is a
duplicate (no verification). Text normalisation and tokenising are datatrove's (simplify
text, spaCy word tokenizer). Stage 3 saves cluster ids; stage 4 writes kept and removed
documents as JSONL with `metadata.minhash_cluster_id`, from which WORK/dups.jsonl
(id, kept_id) is built after the timed run (kept_id = the cluster's kept document).
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path


def arg(name: str, default):
    return type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


def main() -> None:
    data, work = sys.argv[1], Path(sys.argv[2])
    buckets, hashes, workers = arg("--buckets", 9), arg("--hashes", 13), arg("--workers", 2)
    glob = arg("--glob", "*.parquet")
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    files = len(list(Path(data).glob(glob)))
    config = MinhashConfig(n_grams=5, num_buckets=buckets, hashes_per_bucket=hashes,
                           hash_config=HashConfig(precision=64))
    w = str(work)
    t0 = time.perf_counter()
    s1 = LocalPipelineExecutor(
        pipeline=[ParquetReader(data, glob_pattern=glob, text_key="text", id_key="id"),
                  MinhashDedupSignature(output_folder=f"{w}/signatures", config=config)],
        tasks=files, workers=workers, logging_dir=f"{w}/logs/signatures")
    s2 = LocalPipelineExecutor(
        pipeline=[MinhashDedupBuckets(input_folder=f"{w}/signatures",
                                      output_folder=f"{w}/buckets", config=config)],
        tasks=config.num_buckets, workers=workers, logging_dir=f"{w}/logs/buckets", depends=s1)
    s3 = LocalPipelineExecutor(
        pipeline=[MinhashDedupCluster(input_folder=f"{w}/buckets", output_folder=f"{w}/remove_ids",
                                      config=config, save_cluster_id=True)],
        tasks=1, logging_dir=f"{w}/logs/clusters", depends=s2)
    s4 = LocalPipelineExecutor(
        pipeline=[ParquetReader(data, glob_pattern=glob, text_key="text", id_key="id"),
                  MinhashDedupFilter(input_folder=f"{w}/remove_ids", load_cluster_ids=True,
                                     exclusion_writer=JsonlWriter(f"{w}/removed")),
                  JsonlWriter(f"{w}/kept")],
        tasks=files, workers=workers, logging_dir=f"{w}/logs/filter", depends=s3)
    s4.run()
    wall = time.perf_counter() - t0

    # Not timed: turn the outputs into (removed id, kept id of its cluster).
    def docs(folder: str):
        for f in sorted(Path(w, folder).glob("*.jsonl.gz")):
            with gzip.open(f, "rt") as fh:
                for line in fh:
                    d = json.loads(line)
                    yield d["id"], d.get("metadata", {}).get("minhash_cluster_id", -1)

    keeper = {c: i for i, c in docs("kept") if c != -1}
    removed = list(docs("removed"))
    with open(work / "dups.jsonl", "w") as fh:
        for i, c in removed:
            fh.write(json.dumps({"id": i, "kept_id": keeper.get(c)}) + "\n")
    stage_s = {}
    for name in ("signatures", "buckets", "clusters", "filter"):
        stats = Path(w, "logs", name, "stats.json")
        if stats.exists():
            st = json.loads(stats.read_text())
            stage_s[name] = round(sum(b.get("time_stats", {}).get("total", 0) for b in st), 2)
    (work / "timing.json").write_text(json.dumps({
        "wall_s": round(wall, 2), "removed": len(removed), "bands_rows": [buckets, hashes],
        "block_seconds": stage_s,
        "removed_without_kept": sum(keeper.get(c) is None for _, c in removed)}, indent=1))


if __name__ == "__main__":
    main()
