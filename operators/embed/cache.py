"""A Parquet cache of embeddings, so a later run does not re-encode texts it has seen.

Layout: `CACHE_DIR/<backend>-<namespace>/part-*.parquet`, one file per batch that had
misses, columns `key` (16-byte xxh3-128 of namespace + UTF-8 text) and `vector`
(fixed_size_list<float32>). The namespace is a hash of the model fingerprint (a hash of
the model's files), the backend, `max_tokens`, the dimension and, for whole-document
vectors (`long_text: chunks`), the window settings, so a different model, backend,
truncation or chunking never reads another's vectors (head vectors keep the namespace
they had before chunking existed); `info.json` in the folder says which
in words. Files land by atomic rename and carry unique names, so several Ray actors can
share one cache directory; each reads what existed when it started.

Memory: the index of a namespace is loaded whole when the operator starts (about
dim * 4 + 100 bytes per cached text), so the cache suits corpora up to a few million texts
per worker.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash


class EmbeddingCache:
    def __init__(self, root: str | os.PathLike, *, model_id: str, backend: str, max_tokens: int,
                 dim: int, long_text: str = "head") -> None:
        """`long_text`: "head", or what a chunked vector depends on (`chunks.chunk_key`)."""
        ident = f"{model_id}|{backend}|{max_tokens}|{dim}"
        if long_text != "head":
            ident += f"|{long_text}"
        self.namespace = xxhash.xxh3_64_hexdigest(ident.encode())
        self.prefix = ident.encode() + b"\x00"
        self.dim = dim
        self.dir = Path(root).expanduser() / f"{backend}-{self.namespace}"
        self.dir.mkdir(parents=True, exist_ok=True)
        info = self.dir / "info.json"
        if not info.exists():
            tmp = info.with_name(f".info.json.{uuid.uuid4().hex}")
            tmp.write_text(json.dumps({"model_id": model_id, "backend": backend,
                                       "max_tokens": max_tokens, "dim": dim,
                                       "long_text": long_text}, indent=2))
            os.replace(tmp, info)
        self._index: dict[bytes, tuple[int, int]] = {}
        self._blocks: list[np.ndarray] = []
        self.hits = self.misses = 0
        for part in sorted(self.dir.glob("part-*.parquet")):
            table = pq.read_table(part)
            self._add_block(table["key"].to_pylist(), _vectors_of(table["vector"], dim))

    def __len__(self) -> int:
        return len(self._index)

    def keys(self, texts: list[str]) -> list[bytes]:
        p = self.prefix
        return [xxhash.xxh3_128_digest(p + t.encode("utf-8", "surrogatepass")) for t in texts]

    def lookup(self, keys: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, vectors): rows of `vectors` are zero where not found."""
        found = np.zeros(len(keys), bool)
        out = np.zeros((len(keys), self.dim), np.float32)
        for i, k in enumerate(keys):
            where = self._index.get(k)
            if where is not None:
                found[i] = True
                out[i] = self._blocks[where[0]][where[1]]
        self.hits += int(found.sum())
        self.misses += int(len(keys) - found.sum())
        return found, out

    def store(self, keys: list[bytes], vectors: np.ndarray) -> None:
        """Persist new vectors (one Parquet file) and index them for this process."""
        fresh = [i for i, k in enumerate(keys) if k not in self._index]
        if not fresh:
            return
        keys = [keys[i] for i in fresh]
        vectors = np.ascontiguousarray(vectors[fresh], dtype=np.float32)
        table = pa.table({
            "key": pa.array(keys, pa.binary(16)),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), self.dim),
        })
        name = f"part-{os.getpid()}-{uuid.uuid4().hex}.parquet"
        tmp = self.dir / f".{name}.tmp"
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, self.dir / name)
        finally:
            tmp.unlink(missing_ok=True)
        self._add_block(keys, vectors)

    def _add_block(self, keys: list[bytes], vectors: np.ndarray) -> None:
        b = len(self._blocks)
        self._blocks.append(vectors)
        for r, k in enumerate(keys):
            self._index.setdefault(k, (b, r))


def _vectors_of(column: pa.ChunkedArray, dim: int) -> np.ndarray:
    flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(-1, dim)
