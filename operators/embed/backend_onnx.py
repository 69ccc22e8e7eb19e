"""The `onnx` backend: the network exported to ONNX, int8, run by onnxruntime.

Build: the fp32 export (`export.export_onnx`), fused with onnxruntime's BERT optimizer where
the architecture is BERT, then dynamically quantised to int8 with *per-channel* weight
scales (per-tensor scales lose a further 0.06 of mean cosine on MiniLM). Inference runs
the model's own `tokenizer.json` (Rust `tokenizers`), the model's pooling (mean, cls or max
over the attention mask) and L2 normalisation, one text per forward pass (see
`OnnxEncoder.encode`). Fidelity and speed: benchmarks/embed.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from operators.embed.export import check_cosine, export_onnx, reference, versions, write_manifest
from operators.embed.models import Encoder, model_layout, normalise, pool, single_text_feeds
from operators.embed.truncation import load_tokenizer

FORMAT = 1  # artefact layout version: bump when the layout or the build recipe changes
ONNX_FILE = "model.int8.onnx"


class OnnxEncoder(Encoder):
    backend = "onnx"

    def __init__(self, artefact: Path, max_tokens: int | None, threads: int | None) -> None:
        import onnxruntime as ort

        self.open_artefact(artefact, max_tokens)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(artefact / ONNX_FILE), opts,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.tokenizer = load_tokenizer(artefact, self.max_tokens)
        self.dim = int(self.manifest["dim"])

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """One forward pass per text (`batch_size` is not used): dynamic int8 quantisation
        computes each activation scale over the whole input tensor, so in a padded batch a
        text's vector would depend on its batch-mates (cosine down to 0.985 measured). Per
        text, a vector depends on that text alone and no padding is computed; the speed
        difference to batches of 32 was within run-to-run noise on the dev machine."""
        out = np.zeros((len(texts), self.dim), np.float32)
        if not len(texts):
            return out
        pooling = self.manifest["pooling"]
        for i, enc in enumerate(self.tokenizer.encode_batch(list(texts))):
            feeds = single_text_feeds(enc, self.inputs)
            hidden = self.session.run(None, feeds)[0]
            out[i] = pool(hidden, feeds["attention_mask"], pooling)[0]
        return normalise(out)


def build(path: Path, out: Path, threads: int | None, base: dict) -> dict:
    """Export (fp32, eager attention) -> BERT fusion -> per-channel dynamic int8."""
    fields, fp32 = export_onnx(path, out, threads, "onnx")
    layout = model_layout(path)
    fused = False
    source = fp32
    if layout["model_type"] == "bert" and layout["num_heads"] and layout["hidden_size"]:
        from onnxruntime.transformers import optimizer

        opt = optimizer.optimize_model(str(fp32), model_type="bert",
                                       num_heads=int(layout["num_heads"]),
                                       hidden_size=int(layout["hidden_size"]))
        stats = opt.get_fused_operator_statistics()
        fused = bool(stats.get("Attention"))
        if fused:
            source = out / "model.fused.onnx"
            opt.save_model_to_file(str(source))
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(out / ONNX_FILE), per_channel=True,
                     weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    for f in (fp32, out / "model.fused.onnx"):
        f.unlink(missing_ok=True)
    manifest = base | fields | {
        "fused_attention": fused,
        "quantization": "onnxruntime dynamic int8, per-channel QInt8 weights",
        "versions": versions("torch", "transformers", "onnx", "onnxruntime")}
    write_manifest(out, manifest)
    ref = reference(path, fields["max_seq_length"])
    manifest["check_cosine"] = check_cosine(OnnxEncoder(out, None, threads), ref)
    return manifest
