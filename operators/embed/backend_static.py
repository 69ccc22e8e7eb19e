"""The `static` backend: a static (bag-of-token-vectors) model distilled from the network.

Build: model2vec's `distill` embeds every vocabulary token once with the transformer; no
PCA, so vectors stay in the reference's 384-d space and can be compared with it. Inference
is a table look-up and a mean. Being context-free it is far from the transformer on real
documents (mean cosine 0.25, benchmarks/embed.md), so use it with its own thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from operators.embed.export import check_cosine, reference, set_threads, versions, write_manifest
from operators.embed.models import Encoder, model_layout, normalise, offline

FORMAT = 1  # artefact layout version: bump when the layout or the build recipe changes


class StaticEncoder(Encoder):
    backend = "static"
    token_bag = True

    def __init__(self, artefact: Path, max_tokens: int | None, threads: int | None) -> None:
        offline()
        from model2vec import StaticModel

        self.open_artefact(artefact, max_tokens)
        self.model = StaticModel.from_pretrained(str(artefact))
        self.dim = int(self.model.dim)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        return self._mean(texts, batch_size, self.max_tokens)

    def encode_whole(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Untruncated: the mean over all of a text's token vectors, which is exactly the
        token-weighted mean of its windows' (unnormalised) means."""
        return self._mean(texts, batch_size, None)

    def _mean(self, texts: Sequence[str], batch_size: int, max_length: int | None) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        vectors = self.model.encode(list(texts), max_length=max_length,
                                    batch_size=max(batch_size, 1024), show_progress_bar=False,
                                    use_multiprocessing=False)
        return normalise(vectors)


def build(path: Path, out: Path, threads: int | None, base: dict) -> dict:
    """model2vec distillation of the transformer: one vector per vocabulary token."""
    from model2vec.distill import distill

    layout = model_layout(path)
    set_threads(threads)
    static = distill(model_name=str(layout["transformer"]), pca_dims=None, device="cpu")
    static.save_pretrained(str(out))
    manifest = base | {"pooling": "mean of token vectors (model2vec)",
                "max_seq_length": layout["max_seq_length"], "dim": int(static.dim),
                "max_positions": None, "distill": {"pca_dims": None, "tool": "model2vec"},
                "versions": versions("model2vec", "torch", "transformers")}
    write_manifest(out, manifest)
    ref = reference(path, layout["max_seq_length"])
    manifest["check_cosine"] = check_cosine(StaticEncoder(out, None, threads), ref)
    return manifest
