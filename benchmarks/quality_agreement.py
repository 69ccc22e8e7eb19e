"""Keep/drop agreement and speed: our quality operators vs datatrove's filters.

    .venv/bin/python benchmarks/quality_agreement.py \\
        --datatrove-python /tmp/peers/datatrove/bin/python [--limit N] [--json OUT.json]

(a) runs quality.gopher / quality.c4 / quality.fineweb as pure calls (no Ray) on the sample
corpus, (b) runs datatrove's GopherQualityFilter, GopherRepetitionFilter, C4QualityFilter
and FineWebQualityFilter on the same texts in the datatrove venv (this file, re-run there
with --worker), (c) prints per filter the share of documents where keep/drop agrees and
documents per CPU-second for both. CPU time (time.process_time) is used rather than wall
time so that other load on the machine distorts the comparison less; both sides run in
one process, one core. Our side starts cold: the word cache is emptied before each filter.

The worker half must not import pyarrow (the datatrove venv does not have it); texts go
through a temporary pickle outside the repository.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

CORPUS = "/work/shared/data/samples/corpus/*.parquet"
BATCH = 1000

# name -> (datatrove class, kwargs, our op, our params)
FILTERS = {
    "gopher_quality": ("GopherQualityFilter", {}, "quality.gopher", {"repetition": False}),
    "gopher_repetition": ("GopherRepetitionFilter", {}, "quality.gopher", {"quality": False}),
    "c4": ("C4QualityFilter", {}, "quality.c4", {}),
    "c4_fineweb": ("C4QualityFilter", {"filter_no_terminal_punct": False}, "quality.c4",
                   {"filter_no_terminal_punct": False}),
    "fineweb": ("FineWebQualityFilter", {}, "quality.fineweb", {}),
}


# Per-rule comparison: every rule alone (all others switched off on both sides), so a
# rule that is never reached in the full filter (an earlier rule drops the document) is
# still compared. name -> (datatrove class, kwargs, our op, our params)
_GQ_DT = ("min_doc_words", "max_doc_words", "min_avg_word_length", "max_avg_word_length",
          "max_symbol_word_ratio", "max_bullet_lines_ratio", "max_ellipsis_lines_ratio",
          "max_non_alpha_words_ratio", "min_stop_words")
_GQ_OURS = ("min_words", "max_words", "min_mean_word_length", "max_mean_word_length",
            "max_symbol_word_ratio", "max_bullet_lines_ratio", "max_ellipsis_lines_ratio",
            "min_alpha_words_ratio", "min_stop_words")
_GQ_RULES = {"word_count": (0, 1), "mean_word_length": (2, 3), "symbol_ratio": (4,),
             "bullet_lines": (5,), "ellipsis_lines": (6,), "alpha_words": (7,),
             "stop_words": (8,)}
_GR_LINES = ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac")
_TOP = {2: 0.2, 3: 0.18, 4: 0.16}
_DUP = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
_FW = {"line_punct_thr": 0.0, "short_line_thr": 1.0, "char_duplicates_ratio": 1.0,
       "new_line_ratio": 1e18}  # datatrove values that switch a rule off


def per_rule_filters() -> dict:
    rules = {}
    for rule, idx in _GQ_RULES.items():
        dt = {k: None for i, k in enumerate(_GQ_DT) if i not in idx}
        ours = {k: None for i, k in enumerate(_GQ_OURS) if i not in idx}
        rules[f"gopher.{rule}"] = ("GopherQualityFilter", dt, "quality.gopher",
                                   {"repetition": False, **ours})
    ours_off = {f"max_{k}": None for k in _GR_LINES}
    ours_off |= {f"max_top_{n}gram_frac": None for n in _TOP}
    ours_off |= {f"max_dup_{n}gram_frac": None for n in _DUP}
    dt_off = {**{k: None for k in _GR_LINES}, "top_n_grams": (), "dup_n_grams": ()}
    for k in _GR_LINES:
        ours = {kk: v for kk, v in ours_off.items() if kk != f"max_{k}"}
        dt = {kk: v for kk, v in dt_off.items() if kk != k}
        rules[f"gopher.{k}"] = ("GopherRepetitionFilter", dt, "quality.gopher",
                                {"quality": False, **ours})
    for kind, table in (("top", _TOP), ("dup", _DUP)):
        for n, thr in table.items():
            ours = {kk: v for kk, v in ours_off.items() if kk != f"max_{kind}_{n}gram_frac"}
            key = "top_n_grams" if kind == "top" else "dup_n_grams"
            rules[f"gopher.{kind}_{n}gram"] = ("GopherRepetitionFilter",
                                               {**dt_off, key: ((n, thr),)}, "quality.gopher",
                                               {"quality": False, **ours})
    for k in _FW:
        dt = {kk: v for kk, v in _FW.items() if kk != k}
        rules[f"fineweb.{k}"] = ("FineWebQualityFilter", dt, "quality.fineweb",
                                 {kk: None for kk in _FW if kk != k})
    return rules


# datatrove's reason strings -> ours
_REASONS = {
    "gopher_short_doc": "gopher.word_count", "gopher_long_doc": "gopher.word_count",
    "gopher_below_avg_threshold": "gopher.mean_word_length",
    "gopher_above_avg_threshold": "gopher.mean_word_length",
    "gopher_too_many_hashes": "gopher.symbol_ratio",
    "gopher_too_many_ellipsis": "gopher.symbol_ratio",
    "gopher_too_many_bullets": "gopher.bullet_lines",
    "gopher_too_many_end_ellipsis": "gopher.ellipsis_lines",
    "gopher_below_alpha_threshold": "gopher.alpha_words",
    "gopher_enough_stop_words": "gopher.stop_words",
    "lorem_ipsum": "c4.lorem_ipsum", "curly_bracket": "c4.curly_bracket",
    "too_few_sentences": "c4.min_sentences",
}


def map_reason(name: str, reason: str | None) -> str | None:
    if reason is None:
        return None
    if reason in _REASONS:
        return _REASONS[reason]
    if reason.startswith("top_"):  # top_2_gram
        return f"gopher.top_{reason.split('_')[1]}gram"
    if reason.startswith("duplicated_"):  # duplicated_5_n_grams
        return f"gopher.dup_{reason.split('_')[1]}gram"
    family = "fineweb" if name.startswith("fineweb") else "gopher"
    return f"{family}.{reason}"  # empty, dup_para_frac, line_punct_ratio, ...


# --- worker: runs inside the datatrove venv ------------------------------------------------

def worker(texts_path: str, out_path: str, names: list[str]) -> None:
    from datatrove.data import Document
    from datatrove.pipeline import filters

    with open(texts_path, "rb") as f:
        texts = pickle.load(f)
    results = {}
    if names == ["per-rule"]:
        # document-major, so datatrove's word-split cache serves every rule of a document
        rules = {name: getattr(filters, spec[0])(**spec[1])
                 for name, spec in per_rule_filters().items()}
        out = {name: [] for name in rules}
        for i, text in enumerate(texts):
            for name, filt in rules.items():
                try:
                    r = filt.filter(Document(text=text, id=str(i)))
                except Exception as e:  # e.g. ZeroDivisionError with the guards off
                    out[name].append([None, f"error: {type(e).__name__}"])
                    continue
                out[name].append([bool(r[0]), r[1]] if isinstance(r, tuple) else [bool(r), None])
        with open(out_path, "w") as f:
            json.dump({name: {"decisions": d, "cpu_s": float("nan")} for name, d in out.items()},
                      f)
        return
    for name in names:
        cls_name, kwargs, _, _ = FILTERS[name]
        filt = getattr(filters, cls_name)(**kwargs)
        filt.filter(Document(text="Load the tokenizer before timing. " * 20, id="warm"))
        decisions = []
        start = time.process_time()
        for i, text in enumerate(texts):
            r = filt.filter(Document(text=text, id=str(i)))
            if isinstance(r, tuple):
                decisions.append([bool(r[0]), r[1]])
            else:
                decisions.append([bool(r), None])
        results[name] = {"decisions": decisions, "cpu_s": time.process_time() - start}
        print(f"datatrove {name}: {results[name]['cpu_s']:.1f} CPU s", file=sys.stderr)
    with open(out_path, "w") as f:
        json.dump(results, f)


# --- our side ------------------------------------------------------------------------------

def load_corpus(limit: int | None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(p, columns=["id", "text"]) for p in sorted(glob.glob(CORPUS))]
    table = pa.concat_tables(tables)
    return table.slice(0, limit) if limit else table


def stress_corpus(table):
    """Web-like variants of sample documents, built in memory (deterministic): prose lines,
    CRLF endings, "•" bullets and "…", typographic quotes and double spaces, repeated
    paragraphs, bulleted lists, boilerplate lines (policy/javascript/lorem ipsum/
    navigation), non-ASCII words and odd line separators, and YouTube comments
    (quality.parquet) glued into pages. They push documents across the thresholds the
    clean sample rarely reaches."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(0)
    ids, texts = table["id"].to_pylist(), table["text"].to_pylist()
    picks = rng.sample(range(len(texts)), min(3500, len(texts)))

    def prose(t: str) -> str:
        paras = [" ".join(x.split()) for x in t.split("\n\n")]
        return "\n".join(p for p in paras if p)

    boiler = ["Home", "About us", "Contact", "Privacy Policy | Terms of Use",
              "This site uses cookies to improve your experience.",
              "Please enable JavaScript to view the comments.",
              "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
              "Share this:", "Read more...", "Copyright 2024. All rights reserved."]
    foreign = ["café", "naïve", "Straße", "οἶκος", "привет", "mañana", "déjà", "Zürich"]
    out_ids, out = [], []

    def add(kind: str, i: int, text: str) -> None:
        out_ids.append(f"{kind}:{ids[i]}")
        out.append(text)

    for k, i in enumerate(picks):
        t = texts[i]
        p = prose(t)
        kind = k % 8
        if kind == 0:
            add("prose", i, p)
        elif kind == 1:
            add("crlf", i, p.replace("\n", "\r\n") + "\r\n")
        elif kind == 2:
            lines = [("• " + x[2:]) if x.startswith(("- ", "* ")) else x for x in t.split("\n")]
            lines = [x + " …" if x and rng.random() < 0.3 else x for x in lines]
            add("bullets", i, "\n".join(lines))
        elif kind == 3:
            q = p.replace("'", "’").replace("...", "…").replace(". ", ".  ")
            add("typographic", i, q)
        elif kind == 4:
            paras = p.split("\n")
            add("repeat", i, "\n\n".join(paras + paras[: rng.randint(1, max(1, len(paras)))]))
        elif kind == 5:
            lines = p.split("\n")
            for _ in range(rng.randint(1, 6)):
                lines.insert(rng.randint(0, len(lines)), rng.choice(boiler))
            add("boilerplate", i, "\n".join(lines))
        elif kind == 6:
            mark = rng.choice(["- ", "• ", "  - "])
            lines = [x if not x or rng.random() < 0.08 else mark + x for x in p.split("\n")]
            add("list", i, "\n".join(lines))
        else:
            words = p.split(" ")
            for _ in range(max(1, len(words) // 15)):
                words.insert(rng.randint(0, len(words)), rng.choice(foreign))
            sep = rng.choice(["\u2028", "\x0b", "\n\xa0\n", "\n \n"])
            add("unicode", i, " ".join(words).replace("\n", sep))
    yt = pq.read_table(str(Path(CORPUS).parents[1] / "quality.parquet"), columns=["text"])
    comments = yt["text"].to_pylist()
    for j in range(0, len(comments), 12):
        out_ids.append(f"youtube:{j}")
        out.append("\n".join(comments[j:j + rng.randint(4, 24)]))
    return pa.table({"id": out_ids, "text": out})


def run_ours(table, names: list[str], specs: dict) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from operators.base import Context
    from operators.quality import words
    from operators.quality.c4 import C4Quality
    from operators.quality.fineweb import FineWebQuality
    from operators.quality.gopher import GopherQuality

    classes = {c.name: c for c in (GopherQuality, C4Quality, FineWebQuality)}

    results = {}
    for name in names:
        _, _, op_name, params = specs[name]
        cls = classes[op_name]
        op = cls(cls.Params(**params), Context(text_column="text"))
        words.VOCAB._reset()  # cold start, like a fresh worker
        reasons: list[str | None] = []
        start = time.process_time()
        for off in range(0, table.num_rows, BATCH):
            res = op.process(table.slice(off, BATCH))
            reasons.extend(res.reason.to_pylist())
        results[name] = {"reasons": reasons, "cpu_s": time.process_time() - start}
    return results


def report(ours: dict, theirs: dict, ids: list[str]) -> dict:
    summary = {}
    for name in ours:
        mine = ours[name]["reasons"]
        dt = theirs[name]["decisions"]
        errors = sum(d[0] is None for d in dt)
        if errors:  # datatrove raised; leave those documents out
            pairs_ok = [(m, d) for m, d in zip(mine, dt, strict=True) if d[0] is not None]
            mine, dt = [m for m, _ in pairs_ok], [d for _, d in pairs_ok]
        n = len(mine)
        keep_m = [r is None for r in mine]
        keep_t = [d[0] for d in dt]
        agree = sum(a == b for a, b in zip(keep_m, keep_t, strict=True))
        same_reason = sum(m == map_reason(name, d[1]) for m, d in zip(mine, dt, strict=True))
        pairs = Counter((m, d[1]) for m, d in zip(mine, dt, strict=True)
                        if m != map_reason(name, d[1]))
        examples: dict[str, list[str]] = {}
        for i, (m, d) in enumerate(zip(mine, dt, strict=True)):
            if m != map_reason(name, d[1]):
                got = examples.setdefault(f"{m} | {d[1]}", [])
                if len(got) < 5:
                    got.append(ids[i])
        summary[name] = {
            "docs": n,
            "datatrove_errors": errors,
            "agreement": agree / n,
            "disagreements": n - agree,
            "reason_agreement": same_reason / n,
            "dropped_ours": n - sum(keep_m),
            "dropped_datatrove": n - sum(keep_t),
            "docs_per_cpu_s_ours": n / ours[name]["cpu_s"],
            "docs_per_cpu_s_datatrove": n / theirs[name]["cpu_s"],
            "disagreement_reasons": {f"{m} | {t}": c for (m, t), c in pairs.most_common()},
            "examples": examples,
        }
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", nargs=2, metavar=("TEXTS", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--datatrove-python", default="/tmp/peers/datatrove/bin/python")
    ap.add_argument("--filters", default=",".join(FILTERS),
                    help="comma-separated subset, or 'per-rule' for every rule alone")
    ap.add_argument("--limit", type=int, default=None, help="first N documents only")
    ap.add_argument("--corpus", choices=("sample", "stress"), default="sample",
                    help="sample: the corpus as is; stress: web-like variants built from it")
    ap.add_argument("--datatrove-cache", default=None,
                    help="reuse/keep datatrove's results in this JSON file (outside the repo)")
    ap.add_argument("--json", default=None, help="also write the summary here")
    args = ap.parse_args()
    names = args.filters.split(",")
    if args.worker:
        worker(args.worker[0], args.worker[1], names)
        return

    table = load_corpus(None if args.corpus == "stress" else args.limit)
    if args.corpus == "stress":
        table = stress_corpus(table)
        table = table.slice(0, args.limit) if args.limit else table
    texts = table["text"].to_pylist()
    digest = hashlib.sha1("\x00".join(texts).encode()).hexdigest()
    ids = table["id"].to_pylist()
    theirs = None
    if args.datatrove_cache and os.path.exists(args.datatrove_cache):
        with open(args.datatrove_cache) as f:
            cached = json.load(f)
        wanted = list(per_rule_filters()) if names == ["per-rule"] else names
        if cached.get("sha1") == digest and all(k in cached["results"] for k in wanted):
            theirs = cached["results"]
    if theirs is None:
        with tempfile.TemporaryDirectory(prefix="quality-agreement-") as tmp:
            tpath, opath = os.path.join(tmp, "texts.pkl"), os.path.join(tmp, "dt.json")
            with open(tpath, "wb") as f:
                pickle.dump(texts, f)
            subprocess.run([args.datatrove_python, os.path.abspath(__file__), "--worker", tpath,
                            opath, "--filters", ",".join(names)], check=True)
            with open(opath) as f:
                theirs = json.load(f)
        if args.datatrove_cache:  # add to what the cache holds for the same texts
            merged = {}
            if os.path.exists(args.datatrove_cache):
                with open(args.datatrove_cache) as f:
                    old = json.load(f)
                merged = old["results"] if old.get("sha1") == digest else {}
            with open(args.datatrove_cache, "w") as f:
                json.dump({"sha1": digest, "results": {**merged, **theirs}}, f)
    per_rule = names == ["per-rule"]
    specs = per_rule_filters() if per_rule else FILTERS
    cache_keys = list(specs) if per_rule else names
    ours = run_ours(table, cache_keys, specs)
    summary = report(ours, theirs, ids)
    print(f"{'filter':<18} {'keep/drop':>9} {'differ':>6} {'reason':>8} {'drop ours':>9} "
          f"{'drop dt':>8} {'ours doc/cpu-s':>14} {'dt doc/cpu-s':>12}")
    for name, s in summary.items():
        print(f"{name:<18} {s['agreement']:>9.2%} {s['disagreements']:>6} "
              f"{s['reason_agreement']:>8.2%} {s['dropped_ours']:>9} "
              f"{s['dropped_datatrove']:>8} {s['docs_per_cpu_s_ours']:>14.0f} "
              f"{s['docs_per_cpu_s_datatrove']:>12.1f}")
        for pair, count in list(s["disagreement_reasons"].items())[:8]:
            print(f"    {count:>5}  (ours | datatrove) {pair}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
