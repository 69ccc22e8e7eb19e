"""Planted-contamination dev set for the decontamination operators (seeded, deterministic).

    .venv/bin/python benchmarks/contamination_devset.py [--out /tmp/curate-contam/devset]
        [--held-out 300] [--partial 100] [--code 50] [--seed 0]

Starts from the sample kit's planted corpus (`samples/contaminated/`, 11,856 docs, 300 GSM8K
items planted: kinds `verbatim`, `light`, `paraphrase`; `contamination_labels.parquet`) and
adds, all into other clean documents (>= 50 tokens, in no near-duplicate cluster, no plant
yet), each as a new paragraph between `\\n\\n`-separated paragraphs at a random place (the
sample's insertion rule):

- **near misses** (negatives): `--held-out` of the 1,019 GSM8K items the sample did not
  plant are kept OUT of the index and planted in the sample's three forms (`near_verbatim`,
  `near_light`, `near_paraphrase`). Same task, same style, same boilerplate: a detector that
  flags them matches GSM8K-ness, not the indexed items.
- **partial leaks** (positives, items of the index not planted elsewhere): `question`
  (the prompt alone) and `half` (the item's text cut at the word nearest its middle).
- **code** (a second benchmark, `pystdlib`): functions of the Python 3.11 standard library
  (top-level modules of `--stdlib`, 6-60 lines, one per distinct text) as items, HumanEval
  style (prompt = signature + docstring, answer = the rest, text = the whole function).
  `code_verbatim` plants an indexed function unchanged; `code_renamed` plants it with the
  function name, parameters and local names renamed and the docstring removed (a rewritten
  leak: only the code's shape and the names it calls stay); `near_code` plants another
  function of the same module that is not in the index (negative). A function sharing
  a word 8-gram with the clean sample corpus is never used (the corpus's Python docs
  describe these functions, often in their docstrings' words).

Light and paraphrase forms are remade here from the samples README's description (not its
code): light = 1 or 2 of sentence shuffle, case/whitespace change (lower, upper or random
spaces/tabs/newlines), ~12% of words dropped; paraphrase = WordNet 3.0 first-sense
single-word synonyms for ~30% of the eligible non-stopwords (`semantic_devset.reword`, which
takes the first other lemma where the sample drew one at random).

Written to `--out` (never the repository): `corpus/part-*.parquet` (id, text, source; the
sample's order and shards), `index/gsm8k.parquet` and `index/pystdlib.parquet` (the
benchmark items to index: bench_id, benchmark, task, prompt, answer, text),
`filler/pystdlib_filler.parquet` (every other stdlib function of 4-100 lines, packages included:
distractor items for the >= 10k-item index; none is planted), `truth.parquet` (one row per
corpus doc: id, role leak | near_miss | clean, kind, bench_id, benchmark, ops, char_start,
char_end) and `devset.json` (parameters and counts).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import io
import json
import random
import re
import sys
import textwrap
import tokenize
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from semantic_devset import WordNet, reword  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples"
STDLIB = Path("/root/.pyenv/versions/3.11.7/lib/python3.11")
SENTENCE = re.compile(r"(?<=[.!?])\s+")
BENCH_COLUMNS = ("bench_id", "benchmark", "task", "prompt", "answer", "text")
GENERIC = ("value", "item", "result", "data", "obj", "arg", "elem", "tmp", "res", "entry",
           "thing", "part", "node", "val", "buf", "cur", "acc", "key2", "out", "src")


def tokens(text: str) -> list[str]:
    """The samples README's tokenisation."""
    return re.findall(r"\w+", text.lower())


# ---------------------------------------------------------------- edits (from the README)

def light_edit(text: str, rng: random.Random) -> tuple[str, str]:
    """1 or 2 of: shuffle sentences, case/whitespace change, drop ~12% of the words."""
    ops = sorted(rng.sample(["case_ws", "drop", "shuffle"], rng.choice([1, 2])))
    out, done = text, []
    for op in ("shuffle", "drop", "case_ws"):
        if op not in ops:
            continue
        if op == "shuffle":
            parts = SENTENCE.split(out.strip())
            if len(parts) > 1:
                rng.shuffle(parts)
                out = " ".join(parts)
            done.append("shuffle" if len(parts) > 1 else "shuffle(noop)")
        elif op == "drop":
            out = " ".join(w for w in out.split(" ") if not w or rng.random() >= 0.12)
            done.append("drop")
        else:
            mode = rng.choice(["lower", "upper", "ws"])
            out = {"lower": out.lower(), "upper": out.upper()}.get(mode, out)
            out = re.sub(r"[ \t]+", lambda _: rng.choice([" ", "  ", "\t"]), out)
            out = re.sub(r"\n", lambda _: rng.choice(["\n", " ", "\n\n"]), out)
            done.append(f"case_ws:{mode}")
    return out, ",".join(sorted(done))


def half(text: str) -> str:
    """The item's text up to the word boundary nearest its middle (in words)."""
    starts = [m.start() for m in re.finditer(r"\S+", text)]
    return text[:starts[len(starts) // 2]].rstrip() if len(starts) > 1 else text


def plant(host: str, insert: str, rng: random.Random) -> tuple[str, int, int]:
    """`insert` as a new paragraph at a random paragraph boundary; its character span."""
    paras = host.split("\n\n")
    k = rng.randrange(len(paras) + 1)
    before, after = "\n\n".join(paras[:k]), "\n\n".join(paras[k:])
    head = before + "\n\n" if before else ""
    return head + insert + ("\n\n" + after if after else ""), len(head), len(head) + len(insert)


# ---------------------------------------------------------------- code items

def functions(path: Path, module: str, lines_range: tuple[int, int]) -> list[dict]:
    """Functions and methods of one source file with a line count in `lines_range`,
    dedented."""
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    lines = source.splitlines()
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        if not lines_range[0] <= node.end_lineno - first + 1 <= lines_range[1]:
            continue
        text = textwrap.dedent("\n".join(lines[first - 1:node.end_lineno]))
        body0 = node.body[0]
        doc = (isinstance(body0, ast.Expr) and isinstance(body0.value, ast.Constant)
               and isinstance(body0.value.value, str))
        split = (body0.end_lineno if doc else body0.lineno - 1) - first + 1
        text_lines = text.splitlines()
        out.append({"module": module, "name": node.name, "text": text,
                    "prompt": "\n".join(text_lines[:split]),
                    "answer": "\n".join(text_lines[split:]), "has_doc": doc,
                    "doc_lines": (body0.lineno - first, body0.end_lineno - first + 1)
                    if doc else None,
                    "node": node})
    return out


def stdlib_functions(root: Path, packages: bool, lines_range: tuple[int, int]) -> list[dict]:
    """Functions of `root` (top-level modules; with `packages`, every non-test module
    too), one per distinct text, in path order."""
    files = sorted(root.glob("**/*.py" if packages else "*.py"))
    seen, out = set(), []
    for f in files:
        rel = f.relative_to(root)
        if any(p in ("test", "tests", "idle_test", "site-packages") for p in rel.parts):
            continue
        for fn in functions(f, ".".join(rel.with_suffix("").parts), lines_range):
            if fn["text"] not in seen:
                seen.add(fn["text"])
                out.append(fn)
    return out


def local_names(node: ast.AST) -> set[str]:
    """The function's name, its parameters and the names it assigns."""
    names = {node.name}
    a = node.args
    for arg in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg]:
        if arg is not None:
            names.add(arg.arg)
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            names.add(sub.id)
    return names - {"self", "cls"}


def rename(fn: dict, rng: random.Random) -> str:
    """The function with its own names renamed (attributes after `.` untouched) and its
    docstring removed."""
    lines = fn["text"].splitlines()
    if fn["doc_lines"]:
        s, e = fn["doc_lines"]
        indent = lines[s][:len(lines[s]) - len(lines[s].lstrip())]
        lines = lines[:s] + (lines[e:] or [indent + "pass"])
    text = "\n".join(lines) + "\n"
    names = sorted(local_names(fn["node"]))
    pool = list(GENERIC)
    rng.shuffle(pool)
    new = {n: f"{pool[i % len(pool)]}{i // len(pool) or ''}" for i, n in enumerate(names)}
    out, prev = [], None
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, IndentationError):
        return text
    for t in toks:
        if t.type == tokenize.NAME and t.string in new and not (prev and prev.string == "."):
            t = t._replace(string=new[t.string])
        out.append(t)
        if t.type not in (tokenize.NL, tokenize.COMMENT):
            prev = t
    return tokenize.untokenize(out).rstrip()


def corpus_grams(samples: Path, n: int = 8) -> set[int]:
    """Hashes of every word n-gram of the clean sample corpus (README tokens)."""
    grams: set[int] = set()
    for f in sorted((samples / "corpus").glob("part-*.parquet")):
        for text in pq.read_table(f, columns=["text"])["text"].to_pylist():
            t = tokens(text)
            grams.update(hash(tuple(t[i:i + n])) for i in range(len(t) - n + 1))
    return grams


def in_corpus(fn: dict, grams: set[int], n: int = 8) -> bool:
    """Whether the function's text shares a word n-gram with the clean corpus."""
    t = tokens(fn["text"])
    return any(hash(tuple(t[i:i + n])) in grams for i in range(len(t) - n + 1))


def code_lines(text: str) -> set[str]:
    """A function's non-trivial lines (stripped, 12+ characters): what a copy shares."""
    return {s for s in (line.strip() for line in text.splitlines()) if len(s) >= 12}


class CopyCheck:
    """Whether a function is a near copy of another stdlib function (any of which may be
    indexed): difflib ratio >= `ratio`, or half the lines of either found in the other.

    The standard library copies itself (`lzma.write` is `bz2.write` at ratio 0.99,
    `poplib.close` is `ftplib.close`, `ast._str_literal_helper` nests `escape_char`), and
    such a copy is the item's text, not a different item of the task, so it cannot be a
    near miss. The rule is character- and line-based, not the detectors' word n-grams.
    Compared: functions of the same module and functions sharing a line.
    """

    def __init__(self, universe: list[dict], ratio: float = 0.6, contain: float = 0.5):
        self.texts = [f["text"] for f in universe]
        self.lines = [code_lines(t) for t in self.texts]
        self.by_line: dict[str, list[int]] = {}
        self.by_module: dict[str, list[int]] = {}
        for k, (f, lines) in enumerate(zip(universe, self.lines, strict=True)):
            self.by_module.setdefault(f["module"], []).append(k)
            for line in lines:
                self.by_line.setdefault(line, []).append(k)
        self.ratio, self.contain = ratio, contain

    def is_copy(self, fn: dict) -> bool:
        text, lines = fn["text"], code_lines(fn["text"])
        others = set(self.by_module.get(fn["module"], ()))
        for line in lines:
            others.update(self.by_line.get(line, ()))
        for k in sorted(others):
            other = self.texts[k]
            if other == text:
                continue
            shared = len(lines & self.lines[k])
            if lines and self.lines[k] and shared >= self.contain * min(
                    len(lines), len(self.lines[k])):
                return True
            m = difflib.SequenceMatcher(None, text, other, autojunk=False)
            if m.real_quick_ratio() >= self.ratio and m.quick_ratio() >= self.ratio \
                    and m.ratio() >= self.ratio:
                return True
        return False


def code_item(fn: dict, k: int) -> dict:
    return {"bench_id": f"pystdlib:{fn['module']}:{fn['name']}:{k}", "benchmark": "pystdlib",
            "task": fn["module"], "prompt": fn["prompt"], "answer": fn["answer"],
            "text": fn["text"]}


# ---------------------------------------------------------------- build

def read_samples(samples: Path) -> tuple[list[dict], list[dict], dict, set[str]]:
    files = sorted((samples / "contaminated").glob("part-*.parquet"))
    if not files:
        raise SystemExit(f"no shards in {samples / 'contaminated'}")
    docs = pa.concat_tables(pq.read_table(f, columns=["id", "text", "source"])
                            for f in files).to_pylist()
    labels = pq.read_table(samples / "contamination_labels.parquet").to_pylist()
    bench = {r["bench_id"]: r for r in pq.read_table(samples / "bench.parquet").to_pylist()}
    c = pq.read_table(samples / "dedup_clusters.parquet").to_pydict()
    clustered = {i for i, s in zip(c["id"], c["cluster_size"], strict=True) if s > 1}
    return docs, labels, bench, clustered


def build(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    wn = WordNet(Path(args.wordnet))
    docs, labels, bench, clustered = read_samples(Path(args.samples))
    truth = {d["id"]: {"id": d["id"], "role": "clean", "kind": None, "bench_id": None,
                       "benchmark": None, "ops": None, "char_start": None, "char_end": None}
             for d in docs}
    for lb in labels:
        truth[lb["id"]].update(role="leak", **{k: lb[k] for k in (
            "kind", "bench_id", "benchmark", "ops", "char_start", "char_end")})
    planted = {lb["bench_id"] for lb in labels}
    rest = sorted(b for b in bench if b not in planted)
    rng.shuffle(rest)
    held_out, index_only = rest[:args.held_out], rest[args.held_out:]
    partial = index_only[:2 * args.partial]

    hosts = [i for i, d in enumerate(docs) if truth[d["id"]]["role"] == "clean"
             and d["id"] not in clustered and len(tokens(d["text"])) >= 50]
    rng.shuffle(hosts)
    hosts_iter = iter(hosts)

    def put(text: str, role: str, kind: str, bench_id: str, benchmark: str, ops: str) -> None:
        i = next(hosts_iter)
        docs[i]["text"], s, e = plant(docs[i]["text"], text, rng)
        truth[docs[i]["id"]].update(role=role, kind=kind, bench_id=bench_id,
                                    benchmark=benchmark, ops=ops, char_start=s, char_end=e)

    forms = ("verbatim", "light", "paraphrase")
    for k, b in enumerate(held_out):
        form, text = forms[k % 3], bench[b]["text"]
        ops = ""
        if form == "light":
            text, ops = light_edit(text, rng)
        elif form == "paraphrase":
            text = reword(text, wn, 0.3, rng)
            ops = "wordnet_synonyms:0.3"
        put(text, "near_miss", f"near_{form}", b, "gsm8k", ops)
    for k, b in enumerate(partial):
        kind = "question" if k < args.partial else "half"
        put(bench[b]["prompt"] if kind == "question" else half(bench[b]["text"]),
            "leak", kind, b, "gsm8k", "")

    # Code: modules with >= 3 eligible functions; per chosen module two indexed functions
    # (one planted) and one near miss of the same module.
    # The Python docs in the corpus document these very functions, often in their
    # docstrings' words: a function sharing a word 8-gram (PaLM's contamination n) with
    # the clean corpus is not used, so a clean doc stays clean for the code benchmark too.
    grams = corpus_grams(Path(args.samples))
    fns = stdlib_functions(Path(args.stdlib), packages=False, lines_range=(6, 60))
    n_code = len(fns)
    fns = [f for f in fns if not in_corpus(f, grams)]
    excluded = {"dev_functions": n_code - len(fns)}
    by_module: dict[str, list[dict]] = {}
    for fn in fns:
        if fn["has_doc"]:
            by_module.setdefault(fn["module"], []).append(fn)
    modules = sorted(m for m, f in by_module.items() if len(f) >= 3)
    rng.shuffle(modules)
    # Distractors for the >= 10k-item index: shorter and longer functions too (4-100 lines).
    filler_fns = stdlib_functions(Path(args.stdlib), True, (4, 100))
    copies = CopyCheck(filler_fns + fns)
    code_index, used = [], set()
    excluded["near_code_copies"] = 0
    pairs = 0
    for k in range(20 * args.code):  # modules cycle; one without a distinct near miss is skipped
        if pairs == 2 * args.code:
            break
        m = modules[k % len(modules)]
        cands = [f for f in by_module[m] if f["text"] not in used]
        if len(cands) < 3:
            continue
        a, b, *rest = rng.sample(cands, len(cands))
        near = None
        for f in rest:
            if not copies.is_copy(f):
                near = f
                break
            excluded["near_code_copies"] += 1
        if near is None:
            continue
        used.update(f["text"] for f in (a, b, near))
        ia, ib = code_item(a, len(code_index)), code_item(b, len(code_index) + 1)
        code_index += [ia, ib]
        kind = "code_verbatim" if pairs % 2 == 0 else "code_renamed"
        pairs += 1
        put(a["text"] if kind == "code_verbatim" else rename(a, rng), "leak", kind,
            ia["bench_id"], "pystdlib", "" if kind == "code_verbatim" else "rename+nodoc")
        put(near["text"], "near_miss", "near_code", code_item(near, -1)["bench_id"],
            "pystdlib", "")
    filler = [code_item(f, k) for k, f in enumerate(filler_fns)
              if f["text"] not in used and not in_corpus(f, grams)]
    excluded["filler_functions"] = len(filler_fns) - len(filler)
    gsm_index = [{c: bench[b][c] for c in BENCH_COLUMNS}
                 for b in sorted(planted) + sorted(index_only)]
    return write(Path(args.out), docs, truth, gsm_index, code_index, filler, args, excluded)


def write(out: Path, docs: list[dict], truth: dict, gsm: list[dict], code: list[dict],
          filler: list[dict], args: argparse.Namespace, excluded: dict) -> dict:
    for d in ("corpus", "index", "filler"):
        (out / d).mkdir(parents=True, exist_ok=True)
        for old in (out / d).glob("*.parquet"):
            old.unlink()
    table = pa.Table.from_pylist(docs)
    for s in range(0, table.num_rows, 2500):
        pq.write_table(table.slice(s, 2500), out / "corpus" / f"part-{s // 2500:05d}.parquet")
    pq.write_table(pa.Table.from_pylist(gsm), out / "index" / "gsm8k.parquet")
    pq.write_table(pa.Table.from_pylist(code), out / "index" / "pystdlib.parquet")
    pq.write_table(pa.Table.from_pylist(filler), out / "filler" / "pystdlib_filler.parquet")
    rows = list(truth.values())
    pq.write_table(pa.Table.from_pylist(rows), out / "truth.parquet")
    kinds: dict[str, int] = {}
    for r in rows:
        key = f"{r['role']}:{r['kind']}" if r["kind"] else r["role"]
        kinds[key] = kinds.get(key, 0) + 1
    summary = {"params": {k: str(v) for k, v in vars(args).items()}, "docs": len(rows),
               "index_items": {"gsm8k": len(gsm), "pystdlib": len(code)},
               "filler_items": len(filler), "excluded_in_corpus_8gram": excluded,
               "kinds": dict(sorted(kinds.items()))}
    (out / "devset.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/curate-contam/devset")
    ap.add_argument("--samples", default=str(SAMPLES))
    ap.add_argument("--wordnet", default="/usr/share/wordnet")
    ap.add_argument("--stdlib", default=str(STDLIB))
    ap.add_argument("--held-out", type=int, default=300,
                    help="GSM8K items kept out of the index and planted as near misses")
    ap.add_argument("--partial", type=int, default=100, help="question-only and half leaks each")
    ap.add_argument("--code", type=int, default=50, help="verbatim and renamed code leaks each")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if Path(args.out).resolve().is_relative_to(Path(__file__).resolve().parents[1]):
        raise SystemExit("--out must lie outside the repository")
    print(json.dumps(build(args), indent=1))


if __name__ == "__main__":
    main()
