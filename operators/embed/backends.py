"""The embedding backends of the `embed` operator: the one list of them, `load_encoder` and
`prepare_backend`.

Every backend turns texts into L2-normalised float32 vectors; each has a module holding
its encoder and, where it has an artefact, its build (`backend_<name>.py`; what they share
is in `models.py` and `export.py`). Their fidelity to torch and speed: benchmarks/embed.md.

`prepare_backend(model, backend, out_dir)` builds an artefact from a *local* model
directory into the user cache (layout: `models.py`), offline; so does
`curate embed prepare`. Build times on the 2-core dev machine: onnx ~30 s, openvino ~45 s
(int8 calibration included), static ~3.5 min (29.5k vocabulary tokens through the
transformer).

Heavy libraries (torch, onnxruntime, openvino, model2vec) are imported only when a backend
is used, so importing this module (as the operator registry does) is cheap.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from operators.base import local_path
from operators.embed import backend_onnx, backend_openvino, backend_static
from operators.embed.backend_onnx import OnnxEncoder
from operators.embed.backend_openvino import OpenVinoEncoder
from operators.embed.backend_static import StaticEncoder
from operators.embed.backend_torch import TorchEncoder
from operators.embed.export import locked
from operators.embed.models import (
    MANIFEST,
    Encoder,
    artefact_path,
    default_model_path,
    model_fingerprint,
    offline,
    read_manifest,
    resolve_model,
)

__all__ = ["BACKENDS", "BUILT", "REGISTRY", "Backend", "BackendSpec", "Encoder",
           "backend_help", "default_artefact_dir", "default_model_path", "load_encoder",
           "model_fingerprint", "prepare_backend", "read_manifest", "resolve_model"]

# (model directory, build directory, threads, manifest so far) -> the full manifest
Build = Callable[[Path, Path, int | None, dict], dict]


@dataclass(frozen=True)
class BackendSpec:
    encoder: type[Encoder]
    help: str  # one line: the `backend` param's description
    build: Build | None = None  # None: nothing to build, the encoder reads the model directory
    format: int = 0  # the artefact layout version (the backend module's FORMAT)
    precisions: tuple[str, ...] = ()  # the `precision` values it takes, if any

    @property
    def name(self) -> str:
        return self.encoder.backend


# The one list of backends, in the order help texts and the benchmark show them.
REGISTRY: dict[str, BackendSpec] = {spec.name: spec for spec in (
    BackendSpec(TorchEncoder, "reference"),
    BackendSpec(OnnxEncoder, "int8 ONNX export", backend_onnx.build, backend_onnx.FORMAT),
    BackendSpec(OpenVinoEncoder, "the export run by OpenVINO at `precision` (fast only on "
                "CPUs with AMX)", backend_openvino.build, backend_openvino.FORMAT,
                backend_openvino.PRECISIONS),
    BackendSpec(StaticEncoder, "distilled token vectors", backend_static.build,
                backend_static.FORMAT),
)}
BACKENDS: tuple[str, ...] = tuple(REGISTRY)
BUILT: tuple[str, ...] = tuple(name for name, spec in REGISTRY.items() if spec.build)
# The `backend` param's type, built here once from REGISTRY (pydantic reads it at run time).
Backend = Literal[BACKENDS]  # type: ignore[valid-type]

# A model param: a path-like model must exist at validate (the check `resolve_model` makes
# in each actor, which would otherwise surface only as "actor died" after Ray's retries).
LocalModel = Annotated[str | None, local_path(
    "dir", holds=("modules.json", "config.json"), only_if_pathlike=True,
    hint="give a local sentence-transformers model directory, or leave `model` unset "
         "for the packaged all-MiniLM-L6-v2")]
MODEL_HELP = ("local sentence-transformers model directory (default: the packaged "
              "all-MiniLM-L6-v2); never downloaded")


def backend_help() -> str:
    """Every backend with its one-line description, for parameter and command help."""
    listed = "; ".join(f"{spec.name}: {spec.help}" for spec in REGISTRY.values())
    unbuilt = ", ".join(name for name in BACKENDS if name not in BUILT)
    return f"{listed} (all but {unbuilt} are built offline on first use)"


def spec_of(backend: str) -> BackendSpec:
    if backend not in REGISTRY:
        raise ValueError(f"unknown embedding backend '{backend}' (one of {', '.join(BACKENDS)})")
    return REGISTRY[backend]


def default_artefact_dir(model: str | os.PathLike | None, backend: str) -> Path:
    """Where the user cache keeps `backend`'s artefact of `model`."""
    return artefact_path(model, backend, spec_of(backend).format)


def load_encoder(model: str | os.PathLike | None, backend: str, *, max_tokens: int | None = None,
                 threads: int | None = None, artefact_dir: str | os.PathLike | None = None,
                 prepare: bool = True, precision: str = "bf16") -> Encoder:
    """An encoder for `backend`; artefacts are built on first use if `prepare`.
    `precision` applies to the backends that take one (openvino)."""
    offline()
    spec = spec_of(backend)
    if spec.build is None:
        return spec.encoder(resolve_model(model), max_tokens, threads)
    if artefact_dir is not None:
        artefact = Path(artefact_dir).expanduser()
        if read_manifest(artefact) is None and prepare:
            prepare_backend(model, backend, artefact, threads=threads)
    elif prepare:
        artefact = prepare_backend(model, backend, threads=threads)
    else:
        artefact = default_artefact_dir(model, backend)
    options = {"precision": precision} if spec.precisions else {}
    return spec.encoder(artefact, max_tokens, threads, **options)


def prepare_backend(model: str | os.PathLike | None, backend: str,
                    out_dir: str | os.PathLike | None = None, *, threads: int | None = None,
                    force: bool = False) -> Path:
    """Build the `backend` artefact of local model `model` into `out_dir`; return its path.

    `model` None means the packaged MiniLM; `out_dir` None means the user cache
    (`default_artefact_dir`). An existing artefact for the same model fingerprint is
    reused unless `force`. Concurrent callers (several Ray actors) build it once: the
    build holds a file lock and lands by an atomic rename. For a backend with nothing to
    build (torch) the model directory itself is returned.
    """
    offline()
    path = resolve_model(model)
    spec = spec_of(backend)
    if spec.build is None:
        return path
    out = Path(out_dir).expanduser() if out_dir is not None else default_artefact_dir(model,
                                                                                      backend)
    fingerprint = model_fingerprint(str(path))

    def current() -> bool:
        m = read_manifest(out)
        return bool(m) and m.get("model_id") == fingerprint \
            and m.get("format") == spec.format and m.get("backend") == backend

    if current() and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out.parent / f".{out.name}.lock"):
        if current() and not force:
            return out
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=out.parent))
        try:
            start = time.perf_counter()
            base = {"format": spec.format, "backend": backend, "model_id": fingerprint,
                    "model_path": str(path)}
            manifest = spec.build(path, tmp, threads, base)
            manifest |= {"built_seconds": round(time.perf_counter() - start, 1),
                         "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out
