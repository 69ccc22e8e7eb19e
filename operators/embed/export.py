"""What the artefact builds share: the fp32 ONNX export, the tokenizer copy, the check
against the torch reference, manifests, library versions and the build lock.

Heavy libraries (torch, transformers, tokenizers) are imported inside the functions, so
importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from operators.embed.backend_torch import TorchEncoder
from operators.embed.models import MANIFEST, Encoder, model_layout

# Sentences used to check a freshly built artefact against the torch reference.
CHECK_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "List files in a directory, including hidden ones: ls -la path/to/directory",
    "Python's asyncio module provides infrastructure for writing concurrent code.",
    "Remove all stopped containers and unused images to free disk space.",
)


def reference(path: Path, max_tokens: int) -> np.ndarray:
    """The torch reference's vectors for CHECK_TEXTS: computed once per build."""
    ref = TorchEncoder(path, max_tokens, None)
    return ref.encode(CHECK_TEXTS, batch_size=len(CHECK_TEXTS))


def check_cosine(encoder: Encoder, ref: np.ndarray) -> float:
    """Mean cosine of `encoder`'s vectors on CHECK_TEXTS to `ref` (`reference(...)`)."""
    check = encoder.encode(CHECK_TEXTS, batch_size=len(CHECK_TEXTS))
    return round(float((check * ref).sum(axis=1).mean()), 5)


def write_manifest(out: Path, manifest: dict) -> None:
    """Write the manifest so far: the encoders that check a build read it."""
    (out / MANIFEST).write_text(json.dumps(manifest))


def versions(*names: str) -> dict[str, str]:
    """Installed versions of the packages `names` (those not installed are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """An exclusive `flock` on `lock_path`: several Ray actors then build an artefact once."""
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def save_tokenizer(transformer: Path, out: Path) -> int:
    """Copy the fast tokenizer (`tokenizer.json`) next to the artefact; returns the pad id."""
    src = transformer / "tokenizer.json"
    if src.exists():
        shutil.copyfile(src, out / "tokenizer.json")
    else:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(transformer), local_files_only=True)
        tok.backend_tokenizer.save(str(out / "tokenizer.json"))
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    pad = tok.padding or {}
    return int(pad.get("pad_id", tok.token_to_id("[PAD]") or 0))


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def export_onnx(path: Path, out: Path, threads: int | None, backend: str) -> tuple[dict, Path]:
    """Plain fp32 ONNX export of the transformer (eager attention, TorchScript exporter,
    opset 17, dynamic batch and token axes) into `out/model.fp32.onnx`, plus `tokenizer.json`.

    Returns the manifest fields shared by every backend built on the export, and the file.
    """
    import torch
    from transformers import AutoModel

    layout = model_layout(path)
    if layout["extra_modules"]:
        raise ValueError(f"{path}: modules {layout['extra_modules']} after pooling are not "
                         f"supported by the {backend} backend (use backend: torch)")
    set_threads(threads)
    transformer = layout["transformer"]
    net = AutoModel.from_pretrained(str(transformer), attn_implementation="eager",
                                    local_files_only=True)
    net.eval()
    pad_id = save_tokenizer(transformer, out)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    probe = tok.encode("hello world")
    uses_types = "token_type_ids" in _forward_args(net)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if uses_types else [])

    class Hidden(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(names, args, strict=True))).last_hidden_state

    ids = torch.tensor([probe.ids, probe.ids], dtype=torch.long)
    sample = (ids, torch.ones_like(ids)) + ((torch.zeros_like(ids),) if uses_types else ())
    fp32 = out / "model.fp32.onnx"
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Hidden(net), sample, str(fp32), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    fields = {"pooling": layout["pooling"], "max_seq_length": layout["max_seq_length"],
              "max_positions": layout["max_positions"] or 512, "pad_id": pad_id,
              "dim": int(layout["hidden_size"]), "inputs": names}
    return fields, fp32


def _forward_args(net) -> set[str]:
    import inspect

    return set(inspect.signature(net.forward).parameters)

