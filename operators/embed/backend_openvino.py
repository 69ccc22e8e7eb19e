"""The `openvino` backend: the fp32 ONNX export converted to OpenVINO IR and run by
OpenVINO's CPU plugin, length-sorted padded batches through an async request queue.

Three precisions: `bf16` (default; mean cosine 0.99998 to torch, so thresholds carry
over), `int8` (fully-connected layers statically quantised with NNCF, calibrated on Python
standard-library docstrings; mean cosine 0.9965; the fastest) or `f32`; the cosines are
those measured in benchmarks/embed.md, with the speed-ups over torch. bf16, and the
non-quantised parts of int8, need AVX512-BF16/AMX: without them the plugin runs f32 and
bf16 is no faster than torch; the encoder logs the precision it got, the manifest the
build's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from operators.embed.export import check_cosine, export_onnx, reference, versions, write_manifest
from operators.embed.models import Encoder, normalise, pool, single_text_feeds
from operators.embed.truncation import load_tokenizer

log = logging.getLogger(__name__)

FORMAT = 2  # artefact layout version: bump when the layout or the build recipe changes
PRECISIONS: tuple[str, ...] = ("bf16", "int8", "f32")
OPENVINO_FILE = "model.xml"  # OpenVINO IR; the weights are in model.bin beside it
OPENVINO_INT8_FILE = "model.int8.xml"


class OpenVinoEncoder(Encoder):
    """The export run by OpenVINO's CPU plugin: bf16 matmuls where the CPU has them, or the
    int8 model (fully-connected layers in int8, the rest bf16/f32), or plain f32.

    Texts are sorted by token count and cut into batches of `batch_size` (padding only to
    the batch's longest text), and the batches go through an `AsyncInferQueue` so that the
    plugin's streams (2 with 2 threads) each run one. `precision` is what was asked for
    and, for bf16/f32, what the plugin actually runs; `runtime` is the plugin's precision
    for the layers that are not int8.
    """

    backend = "openvino"

    def __init__(self, artefact: Path, max_tokens: int | None, threads: int | None,
                 precision: str = "bf16") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"openvino precision must be one of {PRECISIONS}, got {precision!r}")
        import openvino as ov

        self.open_artefact(artefact, max_tokens)
        # THROUGHPUT picks the stream count from the thread count (2 threads -> 2 streams).
        # The hint is always set, since the plugin's default is bf16 on AMX CPUs already;
        # int8 runs its other layers in bf16 where it can.
        hint = "f32" if precision == "f32" else "bf16"
        config: dict = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        model = OPENVINO_INT8_FILE if precision == "int8" else OPENVINO_FILE
        self.compiled = core.compile_model(core.read_model(str(artefact / model)), "CPU", config)
        self.runtime = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.precision = "int8" if precision == "int8" else self.runtime
        if self.runtime != hint:
            log.warning("openvino: %s requested but the CPU runs %s (no bf16 support); "
                        "expect %s", hint, self.runtime,
                        "a smaller speed-up" if precision == "int8" else "torch-like speed")
        log.info("openvino: precision %s (other layers %s), %s streams", self.precision,
                 self.runtime, self.compiled.get_property("NUM_STREAMS"))
        self.queue = ov.AsyncInferQueue(
            self.compiled, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.inputs = [i.get_any_name() for i in self.compiled.inputs]
        self.tokenizer = load_tokenizer(artefact, self.max_tokens)
        self.pad_id = int(self.manifest.get("pad_id", 0))
        self.dim = int(self.manifest["dim"])

    @property
    def variant(self) -> str:
        # Each precision gives slightly different vectors, so the cache keeps them apart.
        if self.precision == "int8":
            return f"openvino-int8-{self.runtime}"
        return f"openvino-{self.precision}"

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Padded batches with an attention mask: padding is masked out of attention and of
        the pooling, so a vector depends on its batch-mates only through float rounding
        (cosine > 0.9999 between a text alone and in a batch of longer texts)."""
        out = np.zeros((len(texts), self.dim), np.float32)
        if not len(texts):
            return out
        pooling = self.manifest["pooling"]
        encs = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([len(e.ids) for e in encs], kind="stable")
        errors: list[Exception] = []

        def done(request, userdata) -> None:
            # Runs on an OpenVINO thread: an exception here would be lost, so keep it.
            rows, mask = userdata
            try:
                out[rows] = pool(request.get_output_tensor(0).data, mask, pooling)
            except Exception as e:
                errors.append(e)

        self.queue.set_callback(done)
        for start in range(0, len(order), max(batch_size, 1)):
            rows = order[start:start + max(batch_size, 1)]
            width = max(len(encs[i].ids) for i in rows)
            ids = np.full((len(rows), width), self.pad_id, np.int64)
            mask = np.zeros_like(ids)
            types = np.zeros_like(ids)
            for r, i in enumerate(rows):
                n = len(encs[i].ids)
                ids[r, :n], mask[r, :n], types[r, :n] = encs[i].ids, 1, encs[i].type_ids
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            self.queue.start_async({k: feeds[k] for k in self.inputs}, (rows, mask))
        self.queue.wait_all()
        if errors:
            raise errors[0]
        return normalise(out)


def build(path: Path, out: Path, threads: int | None, base: dict) -> dict:
    """The fp32 export converted to OpenVINO IR (weights kept fp32: bf16 happens at run
    time, and only where the CPU supports it), plus an int8 IR of it quantised by NNCF.

    IR rather than the ONNX file: each actor's load then skips the ONNX front end (0.55 s vs
    0.8-1.4 s read + compile measured), and the IR is the plugin's native format.
    int8 is NNCF post-training quantisation in its transformer mode (SmoothQuant, then
    int8 weights and activations in the fully-connected layers, fast bias correction),
    calibrated on 300 standard-library docstrings, one text per sample so that no padding
    enters the statistics. ONNX Runtime's static QDQ int8 of the same export had lost 0.065
    of mean cosine; NNCF's loses a few thousandths (benchmarks/embed.md).
    """
    import nncf
    import openvino as ov

    from operators.embed.calibration import calibration_texts

    fields, fp32 = export_onnx(path, out, threads, "openvino")
    model = ov.convert_model(str(fp32))
    ov.save_model(model, str(out / OPENVINO_FILE), compress_to_fp16=False)
    fp32.unlink()
    texts = calibration_texts()
    encodings = load_tokenizer(out, fields["max_seq_length"]).encode_batch(texts)
    samples = nncf.Dataset(encodings, lambda enc: single_text_feeds(enc, fields["inputs"]))
    int8 = nncf.quantize(model, samples, model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(texts))
    ov.save_model(int8, str(out / OPENVINO_INT8_FILE), compress_to_fp16=False)
    manifest = base | fields | {
        "quantization": "bf16/f32: none (fp32 weights); int8: NNCF post-training, "
                        "transformer mode",
        "calibration": f"{len(texts)} Python standard-library docstrings",
        "versions": versions("torch", "transformers", "onnx", "openvino", "nncf")}
    write_manifest(out, manifest)
    encoder = OpenVinoEncoder(out, None, threads)
    ref = reference(path, fields["max_seq_length"])
    manifest["check_cosine"] = check_cosine(encoder, ref)
    manifest["check_cosine_int8"] = check_cosine(OpenVinoEncoder(out, None, threads, "int8"),
                                                 ref)
    # What the build machine ran; another CPU may differ (the encoder logs its own).
    manifest["inference_precision"] = encoder.precision
    return manifest
