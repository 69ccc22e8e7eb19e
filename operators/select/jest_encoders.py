"""Where `select.jest` gets each model's view of a pair: the learner's and the reference's
(left, right) embeddings, and the SigLIP scale and bias their pair losses use.

A source is one of:
- a local sentence-transformers model run by an `embed` backend (`model`, `backend`):
  both text columns are embedded with it;
- two vector columns already in the rows (`columns: [left_vec, right_vec]`), e.g. written
  by two `embed` steps or computed elsewhere; nothing is loaded.

Either may pass through a two-tower head trained by `curate train-learner` (`head`, an
`.npz` checkpoint: one linear map per side and SigLIP's t and b; algorithms.md 1.7),
which also supplies the scale and bias. Without a head the pair loss uses SigLIP's
initialisation, t = 10 and b = -10 (Zhai et al. 2023), on the raw cosine.

Checkpoints are plain npz (no pickle): `left_weight`, `right_weight` (d_in x d_out,
float32), `scale`, `bias` (float64 scalars) and `meta` (a JSON string: input_dim, the
encoder's backend and model fingerprint it was trained on, held-out recall@1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

# curate.select.jest is the selector library (numpy, no Ray, no curate run) that this step
# wraps; it imports nothing else of curate, so the layers stay acyclic.
from curate.select.jest import SIGLIP_BIAS, SIGLIP_SCALE
from operators.base import Params, local_path
from operators.embed.backends import MODEL_HELP, Backend, LocalModel, backend_help

HEAD_FORMAT = 1


class SourceParams(Params):
    """One model's view of the pairs: an embedding model or two vector columns, and an
    optional trained head."""

    model: LocalModel = Field(None, description=MODEL_HELP)
    backend: Backend = Field("torch", description=backend_help())
    columns: tuple[str, str] | None = Field(
        None, description="two vector columns [left, right] holding this model's embeddings "
                          "of the pair, instead of a model (nothing is loaded)")
    head: Annotated[str | None, local_path(
        "file", hint="train one with `curate train-learner`")] = Field(
        None, description="a two-tower head checkpoint (.npz) from `curate train-learner`, "
                          "applied to the embeddings; it also gives the SigLIP scale and bias")
    batch_size: int = Field(64, ge=1, le=4096, description="texts per forward pass")
    max_tokens: int | None = Field(None, ge=2, le=8192, description="keep the first N "
                                   "word-pieces of each text (default: the model's)")
    threads: int | None = Field(None, ge=1, le=512, description="intra-op threads per actor "
                                "(default: this machine's CPUs / the step's actor count)")
    artefact_dir: str | None = Field(None, description="prepared onnx/openvino/static artefact "
                                     "directory (default: the user cache, built if missing)")

    @model_validator(mode="after")
    def _columns_or_model(self) -> SourceParams:
        model_keys = {"model", "backend", "max_tokens", "artefact_dir"} & self.model_fields_set
        if self.columns is not None and model_keys:
            raise ValueError(f"give either `columns` or a model ({', '.join(sorted(model_keys))}),"
                             " not both")
        return self

    def describe(self) -> str:
        """How messages and metrics name this source."""
        base = (f"columns {self.columns[0]}/{self.columns[1]}" if self.columns
                else f"{self.model or 'all-MiniLM-L6-v2'} ({self.backend})")
        return base + (f" + head {Path(self.head).name}" if self.head else "")


@dataclass(frozen=True)
class Head:
    """A trained two-tower head: x -> x @ left_weight, y -> y @ right_weight, then the
    SigLIP logit scale·cos + bias."""

    left_weight: np.ndarray
    right_weight: np.ndarray
    scale: float
    bias: float
    meta: dict

    @property
    def input_dim(self) -> int:
        return int(self.left_weight.shape[0])

    def apply(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if left.shape[1] != self.input_dim or right.shape[1] != self.input_dim:
            raise ValueError(f"head takes {self.input_dim}-d embeddings, got "
                             f"{left.shape[1]}-d (left) and {right.shape[1]}-d (right)")
        return left @ self.left_weight, right @ self.right_weight


def save_head(path: str | Path, left_weight: np.ndarray, right_weight: np.ndarray,
              scale: float, bias: float, meta: dict) -> Path:
    """Write a head checkpoint (npz, no pickle); `meta` must be JSON-serialisable."""
    path = Path(path)
    if left_weight.shape != right_weight.shape:
        raise ValueError(f"left and right weights differ: {left_weight.shape} vs "
                         f"{right_weight.shape}")
    meta = {"format": HEAD_FORMAT, "input_dim": int(left_weight.shape[0]),
            "output_dim": int(left_weight.shape[1]), **meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, left_weight=left_weight.astype(np.float32),
             right_weight=right_weight.astype(np.float32), scale=np.float64(scale),
             bias=np.float64(bias), meta=np.array(json.dumps(meta, sort_keys=True)))
    tmp.replace(path)
    return path


def load_head(path: str | Path) -> Head:
    """A head checkpoint, checked: a clear error naming the file when it is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            head = Head(z["left_weight"].astype(np.float32), z["right_weight"].astype(np.float32),
                        float(z["scale"]), float(z["bias"]), json.loads(str(z["meta"])))
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path} is not a head checkpoint from `curate train-learner` "
                         f"({exc})") from exc
    if head.meta.get("format") != HEAD_FORMAT:
        raise ValueError(f"{path}: head format {head.meta.get('format')}, this curate reads "
                         f"{HEAD_FORMAT}")
    if head.left_weight.ndim != 2 or head.left_weight.shape != head.right_weight.shape:
        raise ValueError(f"{path}: left and right weights must be equal (d_in, d_out) matrices")
    return head


def known_dim(src: SourceParams) -> int | None:
    """The size of a model source's embeddings when small config files tell it (the model's
    config, or a prepared static artefact's manifest), without loading the model; None for
    column sources and whenever it cannot be told."""
    if src.columns is not None:
        return None
    if src.backend == "static":
        from operators.embed.backends import default_artefact_dir, read_manifest

        try:
            where = (Path(src.artefact_dir).expanduser() if src.artefact_dir
                     else default_artefact_dir(src.model, "static"))
        except (OSError, ValueError):
            return None
        dim = (read_manifest(where) or {}).get("dim")
        return dim if isinstance(dim, int) else None
    from operators.embed.embed import Embed, EmbedParams

    return Embed(EmbedParams(model=src.model, backend=src.backend)).known_dim()


def check_head(src: SourceParams, role: str) -> None:
    """A head must take the embeddings its source gives: its input size against the
    model's (when known), and the backend it was trained on."""
    if src.head is None:
        return
    head = load_head(src.head)
    dim = known_dim(src)
    if dim is not None and dim != head.input_dim:
        raise ValueError(f"{role}: head {src.head} takes {head.input_dim}-d embeddings but "
                         f"{src.describe()} gives {dim}-d; train the head on this model")
    trained = head.meta.get("backend")
    if src.columns is None and trained and trained != src.backend:
        raise ValueError(f"{role}: head {src.head} was trained on '{trained}' embeddings, "
                         f"this source is '{src.backend}'; set backend: {trained} or retrain")


class PairEncoder:
    """A loaded source: (left, right) embeddings of a super-batch and its scale and bias."""

    def __init__(self, src: SourceParams, threads: int, shared: PairEncoder | None = None
                 ) -> None:
        """`shared`: another source's PairEncoder whose loaded model this one reuses when
        both name the same model (e.g. zero-shot MiniLM as learner, MiniLM + a head as
        reference): loaded once per actor, not twice."""
        self.src = src
        self.head = load_head(src.head) if src.head else None
        self.encoder = None
        if src.columns is None and shared is not None and shared.encoder is not None \
                and shared.model_key == self.model_key:
            self.encoder = shared.encoder
        elif src.columns is None:
            from operators.embed.backends import load_encoder

            self.encoder = load_encoder(src.model, src.backend, max_tokens=src.max_tokens,
                                        threads=src.threads or threads,
                                        artefact_dir=src.artefact_dir)
            trained = self.head.meta.get("model_id") if self.head else None
            if trained and trained != self.encoder.model_id:
                raise ValueError(f"head {src.head} was trained on embeddings of {trained}, "
                                 f"this source's model is {self.encoder.model_id}")

    @property
    def model_key(self) -> tuple:
        s = self.src
        return (s.model, s.backend, s.max_tokens, s.artefact_dir, s.threads)

    @property
    def scale_bias(self) -> tuple[float, float]:
        """The head's trained SigLIP t and b, else SigLIP's initialisation."""
        return (self.head.scale, self.head.bias) if self.head else (SIGLIP_SCALE, SIGLIP_BIAS)

    def pair(self, left_texts: list[str], right_texts: list[str],
             vectors: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
        """(left, right) embeddings, through the head if there is one."""
        if self.encoder is not None:
            left = self.encoder.encode(left_texts, self.src.batch_size)
            right = self.encoder.encode(right_texts, self.src.batch_size)
        else:
            left, right = vectors
            if left.shape[1] != right.shape[1]:
                c = self.src.columns
                raise ValueError(f"columns {c[0]} ({left.shape[1]}-d) and {c[1]} "
                                 f"({right.shape[1]}-d) differ in size: a pair's two "
                                 "embeddings must come from one model")
        return self.head.apply(left, right) if self.head else (left, right)
