"""quality.classifier: score texts with a trained quality model and keep the best.

The model (trained by `curate.train_quality.train_quality`) is a logistic regression over
*hashed* features: word 1-2-grams and character 3-5-grams (within word boundaries),
sublinear counts (log1p), L2-normalised per text. This is the DCLM "fastText-style" tier
of docs/algorithms.md 5.6: thousands of docs/s on one core, no vocabulary to store, no
GPU, and strong on the surface cues that separate curated text from spam/boilerplate.
(The embedding-head tier would cost an `embed` pass, ~25 docs/s per 2 cores here.)

A MODEL is a directory: `manifest.json` (feature settings, training data, held-out
metrics, versions) and `weights.npz` (the non-zero coefficients and the intercept).
No pickle: loading a model runs no code from the file.

Signal: `quality_score` = P(positive | text) in [0, 1]. Decision, reason `low_quality`:
- `threshold` (default 0.5 when `top_fraction` is not set): keep texts scoring >= it;
- `top_fraction`: keep the best-scoring fraction of all rows that reach this step, over
  the whole run (ties broken by input order; k = round(fraction * rows)). This needs a
  global view, so the operator is a global one: score (map) -> scores (emit `_order`,
  score) -> cut (resolve: rank all scores once on the driver, about 16 bytes per row) ->
  decide (map). The resolve names the smaller of the kept and dropped sets, so what is
  shipped to the decide tasks is at most half the rows' `_order`s (8 bytes each). With
  only `threshold`, it is a single map stage.
`action: annotate` records the score and drops nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from operators.base import ORDER_COLUMN, BatchResult, GlobalOperator, Params, Stage

MODEL_KIND = "curate.quality.hashed-ngram-logreg"
MODEL_VERSION = 1
WEIGHTS = "weights.npz"
MANIFEST = "manifest.json"

_SCORE = "_qc_score"  # temporary column between stages
_TOP = "_qc_top"      # attached by the resolve stage to the rows it names


@dataclass(frozen=True)
class FeatureConfig:
    """How a text becomes a sparse vector; stored in the model's manifest."""

    n_features: int = 2**20           # per feature family (word, char)
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (3, 5)
    lowercase: bool = True
    max_chars: int = 10_000           # only the first N characters are featurised

    @classmethod
    def from_dict(cls, d: dict) -> FeatureConfig:
        d = dict(d)
        for k in ("word_ngrams", "char_ngrams"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def featurize(texts: list[str], cfg: FeatureConfig):
    """Texts -> scipy CSR matrix (n, 2 * n_features), float32, rows L2-normalised."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.preprocessing import normalize

    texts = [t[: cfg.max_chars] for t in texts]
    common = dict(n_features=cfg.n_features, alternate_sign=False, norm=None,
                  lowercase=cfg.lowercase, dtype=np.float32)
    word = HashingVectorizer(analyzer="word", ngram_range=cfg.word_ngrams,
                             token_pattern=r"(?u)\b\w+\b", **common)
    char = HashingVectorizer(analyzer="char_wb", ngram_range=cfg.char_ngrams, **common)
    x = sp.hstack([word.transform(texts), char.transform(texts)], format="csr")
    np.log1p(x.data, out=x.data)
    return normalize(x, norm="l2", copy=False)


@dataclass
class QualityModel:
    cfg: FeatureConfig
    coef: np.ndarray          # dense (2 * n_features,) float32
    intercept: float
    manifest: dict

    def score(self, texts: list[str]) -> np.ndarray:
        """P(positive) per text, float64."""
        if not texts:
            return np.zeros(0)
        logits = featurize(texts, self.cfg) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))

    def save(self, path: str | Path) -> Path:
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        nz = np.flatnonzero(self.coef)
        np.savez_compressed(out / WEIGHTS, index=nz.astype(np.int64),
                            value=self.coef[nz].astype(np.float32),
                            intercept=np.array([self.intercept], np.float64))
        manifest = dict(self.manifest, kind=MODEL_KIND, version=MODEL_VERSION,
                        features=asdict(self.cfg))
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return out

    @classmethod
    def load(cls, path: str | Path) -> QualityModel:
        root = Path(path)
        try:
            manifest = json.loads((root / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{root} is not a quality model directory (no readable "
                             f"{MANIFEST}): {exc}") from None
        if manifest.get("kind") != MODEL_KIND or manifest.get("version") != MODEL_VERSION:
            raise ValueError(f"{root}: model kind/version {manifest.get('kind')}/"
                             f"{manifest.get('version')} is not {MODEL_KIND}/{MODEL_VERSION}")
        cfg = FeatureConfig.from_dict(manifest["features"])
        with np.load(root / WEIGHTS, allow_pickle=False) as w:
            coef = np.zeros(2 * cfg.n_features, np.float32)
            coef[w["index"]] = w["value"]
            intercept = float(w["intercept"][0])
        return cls(cfg, coef, intercept, manifest)


@cache
def _load_cached(path: str, mtime_ns: int) -> QualityModel:
    return QualityModel.load(path)


def load_model(path: str | Path) -> QualityModel:
    """Load once per process (and again if the weights file changes)."""
    p = Path(path).expanduser().resolve()
    return _load_cached(str(p), (p / WEIGHTS).stat().st_mtime_ns)


class ClassifierParams(Params):
    model: str = Field(description="quality MODEL directory written by `curate train-quality`")
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="keep texts with "
                                    "quality_score >= this (default 0.5 unless top_fraction)")
    top_fraction: float | None = Field(None, gt=0.0, le=1.0, description="instead keep the "
                                       "best-scoring fraction of all rows (global ranking)")
    action: Literal["drop", "annotate"] = Field(
        "drop", description="drop: remove low-quality rows; annotate: only record the score")

    @field_validator("model")
    @classmethod
    def _exists(cls, model: str) -> str:
        path = Path(model).expanduser()
        if not (path / MANIFEST).is_file():
            raise ValueError(f"no quality model at '{model}' (expected {MANIFEST} inside; "
                             "train one with `curate train-quality`)")
        return model

    @model_validator(mode="after")
    def _one_rule(self) -> ClassifierParams:
        if self.threshold is not None and self.top_fraction is not None:
            raise ValueError("give either threshold or top_fraction, not both")
        return self


class QualityClassifier(GlobalOperator):
    name = "quality.classifier"
    doc = "Hashed n-gram logistic-regression quality score; keep by threshold or top fraction."
    Params = ClassifierParams
    signal_keys = {"quality_score": "num"}
    reasons = ("low_quality",)

    def stages(self) -> list[Stage]:
        p: ClassifierParams = self.params
        if p.top_fraction is None or p.action == "annotate":
            return [Stage("score", self.score_and_threshold)]
        return [
            Stage("score", self.score),
            Stage("scores", self.emit_scores, kind="emit"),
            Stage("cut", self.cut, kind="resolve"),
            Stage("decide", self.decide_top),
        ]

    @property
    def names_kept(self) -> bool:
        """Whether the resolve stage names the kept rows (else the dropped ones)."""
        return (self.params.top_fraction or 0.0) <= 0.5

    def scores_of(self, rows: pa.Table) -> np.ndarray:
        model = load_model(self.params.model)
        texts = rows[self.ctx.text_column].to_pylist()
        return model.score(["" if t is None else t for t in texts])

    def score_and_threshold(self, rows: pa.Table) -> BatchResult:
        p: ClassifierParams = self.params
        scores = self.scores_of(rows)
        threshold = 0.5 if p.threshold is None else p.threshold
        low = scores < threshold if p.action == "drop" else np.zeros(len(scores), bool)
        detail = [f"quality_score={s:.4f} < threshold={threshold}" if d else None
                  for s, d in zip(scores.tolist(), low.tolist(), strict=True)]
        return _result(rows, low, detail, scores)

    def score(self, rows: pa.Table) -> BatchResult:
        scores = self.scores_of(rows)
        table = rows.append_column(_SCORE, pa.array(scores, pa.float64()))
        return BatchResult.keep_all(table, {"quality_score": pa.array(scores, pa.float64())})

    def emit_scores(self, rows: pa.Table) -> pa.Table:
        return rows.select([ORDER_COLUMN, _SCORE])

    def cut(self, side: pa.Table, rows: pa.Table) -> pa.Table:
        """Rank every score (desc, ties by `_order`); name the smaller side of the cut."""
        p: ClassifierParams = self.params
        if ORDER_COLUMN not in side.column_names or side.num_rows == 0:
            order = np.empty(0, np.int64)
            score = np.empty(0)
        else:
            order = side[ORDER_COLUMN].to_numpy()
            score = side[_SCORE].to_numpy()
        n = len(order)
        k = int(round(p.top_fraction * n))
        rank = np.lexsort((order, -score))  # best first
        kept = rank[:k]
        named = kept if self.names_kept else rank[k:]
        named = named[np.argsort(order[named])]
        cut_score = float(score[rank[k - 1]]) if k else float("inf")
        table = pa.table({ORDER_COLUMN: pa.array(order[named], pa.int64()),
                          _TOP: pa.array(np.full(len(named), self.names_kept), pa.bool_())})
        metrics = {"rows_scored": n, "rows_kept": k, "top_fraction": p.top_fraction,
                   "cut_score": cut_score if k else None}
        return table.replace_schema_metadata({"curate.metrics": json.dumps(metrics)})

    def decide_top(self, rows: pa.Table) -> BatchResult:
        p: ClassifierParams = self.params
        scores = rows[_SCORE].to_numpy(zero_copy_only=False)
        top = pc.fill_null(rows[_TOP], not self.names_kept).to_numpy(zero_copy_only=False)
        low = ~top.astype(bool)
        detail = [f"quality_score={s:.4f} outside top_fraction={p.top_fraction}" if d else None
                  for s, d in zip(scores.tolist(), low.tolist(), strict=True)]
        return _result(rows, low, detail)


def _result(rows: pa.Table, low: np.ndarray, detail: list[str | None],
            scores: np.ndarray | None = None) -> BatchResult:
    reason = pa.array(["low_quality" if d else None for d in low.tolist()], pa.string())
    signals = {} if scores is None else {"quality_score": pa.array(scores, pa.float64())}
    return BatchResult(rows, reason, pa.array(detail, pa.string()), signals)
