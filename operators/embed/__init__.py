"""Embedding operators: `embed` (sentence vectors into a fixed-size float32 column).

`prepare_backend(model, backend, out_dir)` (or `curate embed prepare`) builds the offline
artefacts of the backends that have one (`operators.embed.backends`).
"""

from operators.embed.backends import prepare_backend
from operators.embed.embed import Embed, EmbedParams, vector_array, vectors_of

__all__ = ["Embed", "EmbedParams", "prepare_backend", "vector_array", "vectors_of"]
