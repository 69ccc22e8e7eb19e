"""The `torch` backend, the reference: `SentenceTransformer.encode` on the model directory.

Nothing to build; the other backends are checked against it when they are built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from operators.embed.models import (
    Encoder,
    check_max_tokens,
    copy_tokenizer,
    model_fingerprint,
    model_layout,
    offline,
)


class TorchEncoder(Encoder):
    backend = "torch"

    def __init__(self, path: Path, max_tokens: int | None, threads: int | None) -> None:
        offline()
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.max_tokens = max_tokens or self.model.max_seq_length
        check_max_tokens(self.max_tokens, model_layout(path)["max_positions"] or 512)
        self.model.max_seq_length = self.max_tokens
        self.dim = int(self.model.get_embedding_dimension())
        self.model_id = model_fingerprint(str(path))

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        out = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)

    def wordpiece_tokenizer(self):
        return copy_tokenizer(self.model.tokenizer.backend_tokenizer)
