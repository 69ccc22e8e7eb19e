"""Semantic-twin dev set for `dedup.semantic`, built (seeded, deterministic) from the sample corpus.

    .venv/bin/python benchmarks/semantic_devset.py [--out /tmp/curate-semantic-devset]
        [--twins 400] [--negatives 3000] [--seed 0] [--max-jaccard 0.3]

A twin is a real document rewritten so that a person would still call it the same
document, yet it is no lexical near-duplicate: WordNet synonym substitution (`reword`),
paragraph and sentence reordering (`reorder`), dropping the head or a middle part
(`cut_head`, `cut_middle`, keeping 50-80% of the words), in combinations. A pair is
accepted only when its word-5-gram Jaccard (the samples README's tokens:
`re.findall(r"\\w+", text.lower())`, set of 5-grams) is at most `--max-jaccard`; a draw
above it is retried with a stronger rewording, then the source is given up for the next.
Negatives are documents with no twin: no document in a known near-duplicate cluster
(`dedup_clusters.parquet`, cluster_size > 1) is used, and of any two originals sharing
word-5-gram Jaccard above `--neg-max-jaccard` only the first is kept, so removing a
negative is a false removal as far as text overlap can tell.

Written to `--out` (never the repository): `corpus/part-*.parquet` (id, text, source;
rows shuffled), `twins.parquet` (id_a source, id_b twin, kind, jaccard, reword_rate,
kept_fraction), `roles.parquet` (id, role: source | twin | negative) and `devset.json`
(parameters, counts, Jaccard distribution). Needs WordNet 3.0's database files
(Debian `wordnet-base`: /usr/share/wordnet, or `--wordnet DIR`).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples"
WORDNET = Path("/usr/share/wordnet")
KINDS = ("reword", "reword+reorder", "reword+cut_head", "reword+cut_middle",
         "reword+reorder+cut_middle")
RATES = (0.35, 0.5, 0.65, 0.8)  # share of eligible prose words substituted, per attempt
MIN_SOURCE_TOKENS = 50
STOPWORDS = frozenset(re.findall(r"\w+", """
a about above after again against all also am an and any are as at be
because been before being below between both but by can could did do does doing down during
each few for from further had has have having he her here hers him his how i if in into is it
its itself just may me might more most must my no nor not now of off on once only or other our
ours out over own same she should so some such than that the their them then there these they
this those through to too under until up very was we were what when where which while who whom
why will with would you your yours one two first new use used using see"""))
# Code and markup are kept verbatim: a renamed command, identifier, link or reST role
# would make another document (or broken markup), not a reworded one.
CODE = re.compile(r"``[^`\n]*``|`[^`\n]*`|\{\{[^}\n]*\}\}"  # inline code, tldr placeholders
                  r"|^(?: {4}|\t|>>>|\$ ).*$"  # code blocks, sessions
                  r"|https?://\S+|<[^>\n]*>"  # links
                  r"|:[\w-]+:|\.\. [\w-]+::"  # reST roles and directives
                  r"|-{1,2}\w[\w-]*|\w+(?:[._]\w+)+", re.M)  # options, dotted/snake names
WORD = re.compile(r"[A-Za-z]{3,}")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def tokens(text: str) -> list[str]:
    """The samples README's tokenisation."""
    return re.findall(r"\w+", text.lower())


def shingles(text: str) -> set[tuple[str, ...]]:
    """The set of word 5-grams."""
    t = tokens(text)
    return {tuple(t[i:i + 5]) for i in range(len(t) - 4)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class WordNet:
    """First-sense single-word synonyms from WordNet 3.0's index.* and data.* files."""

    POS = ("noun", "verb", "adj", "adv")

    def __init__(self, root: Path) -> None:
        if not (root / "index.noun").exists():
            raise SystemExit(f"WordNet database not found in {root}: install Debian's "
                             "wordnet-base (apt-get install wordnet-base) or pass --wordnet DIR")
        self.data = {p: (root / f"data.{p}").read_bytes() for p in self.POS}
        self.first: dict[str, tuple[str, int, int]] = {}  # lemma -> (pos, offset, senses)
        for pos in self.POS:
            for line in (root / f"index.{pos}").read_text(encoding="latin-1").splitlines():
                if line.startswith(" "):  # licence header
                    continue
                f = line.split()
                lemma, senses, n_ptr = f[0], int(f[2]), int(f[3])
                offset = int(f[6 + n_ptr])  # first synset offset = first sense
                # The POS where the word has the most senses stands for it (no tagger).
                if lemma not in self.first or senses > self.first[lemma][2]:
                    self.first[lemma] = (pos, offset, senses)
        self._cache: dict[str, str | None] = {}

    def synonym(self, word: str) -> str | None:
        """A different single-word lemma of `word`'s first sense, or None."""
        if word not in self._cache:
            self._cache[word] = self._lookup(word)
        return self._cache[word]

    def _lookup(self, word: str) -> str | None:
        if word not in self.first:
            return None
        pos, offset, _ = self.first[word]
        data = self.data[pos]
        f = data[offset:data.index(b"\n", offset)].decode("latin-1").split()
        count = int(f[3], 16)
        for lemma in f[4:4 + 2 * count:2]:
            lemma = re.sub(r"\(.*\)$", "", lemma).lower()  # adjective markers like (a)
            if lemma != word and lemma.isalpha():
                return lemma
        return None


@dataclass
class Twin:
    text: str
    kind: str
    jaccard: float
    rate: float
    kept: float


def reword(text: str, wn: WordNet, rate: float, rng: random.Random) -> str:
    """Substitute a first-sense synonym for about `rate` of the eligible prose words
    (not stopwords, not in code); a plural noun or 3rd-person verb keeps its -s."""

    def swap(m: re.Match) -> str:
        word = m.group(0)
        low = word.lower()
        if low in STOPWORDS or rng.random() >= rate:
            return word
        syn, suffix = wn.synonym(low), ""
        if syn is None and low.endswith("s"):
            syn, suffix = wn.synonym(low[:-1]), "s"
        if syn is None:
            return word
        syn += suffix
        return syn.capitalize() if word[0].isupper() else syn

    out, last = [], 0
    for code in CODE.finditer(text):
        out.append(WORD.sub(swap, text[last:code.start()]))
        out.append(code.group(0))
        last = code.end()
    out.append(WORD.sub(swap, text[last:]))
    return "".join(out)


def units(text: str) -> list[str]:
    """Paragraphs; one ending with ':' (a tldr example, an rst `::` block) stays with the
    next, so an explanation never parts from its command."""
    paras = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    out: list[str] = []
    for p in paras:
        if out and out[-1].rstrip().endswith(":"):
            out[-1] += "\n\n" + p
        else:
            out.append(p)
    return out


def pieces(text: str) -> tuple[list[str], str]:
    """The finest natural split with at least 4 parts (units, lines, sentences, words)
    and the separator that rejoins them."""
    for parts, sep in ((units(text), "\n\n"), (text.strip().splitlines(), "\n"),
                       (SENTENCE_END.split(text.strip()), " ")):
        parts = [p for p in parts if p.strip()]
        if len(parts) >= 4:
            return parts, sep
    return text.split(), " "


def reorder(text: str, rng: random.Random) -> str:
    """Shuffle the units (the first stays when there are 4 or more: a title or lead)
    and the sentences inside each prose unit."""
    parts = units(text)
    head, body = (parts[:1], parts[1:]) if len(parts) >= 4 else ([], parts)
    perm = body[:]
    for _ in range(5):
        rng.shuffle(perm)
        if perm != body or len(body) < 2:
            break
    out = []
    for p in head + perm:
        sentences = SENTENCE_END.split(p)
        if len(sentences) >= 2 and not CODE.search(p):
            rng.shuffle(sentences)
            p = " ".join(sentences)
        out.append(p)
    return "\n\n".join(out)


def cut(text: str, where: str, rng: random.Random) -> tuple[str, float]:
    """Drop the head or a middle run of pieces so that about 50-80% of the words stay;
    returns the text and the share of words kept."""
    parts, sep = pieces(text)
    words = np.array([len(tokens(p)) for p in parts], float)
    total = words.sum()
    target = rng.uniform(0.5, 0.8)
    n = len(parts)
    best: tuple[float, int, int] | None = None
    # Candidate drops: [s, e) with s = 0 (head) or 0 < s, e < n (middle).
    starts = [0] if where == "head" else range(1, n - 1)
    cum = np.concatenate([[0.0], np.cumsum(words)])
    for s in starts:
        for e in range(s + 1, n):  # the last piece always stays
            kept = 1 - (cum[e] - cum[s]) / total
            if best is None or abs(kept - target) < abs(best[0] - target):
                best = (kept, s, e)
    if best is None:
        return text, 1.0
    kept, s, e = best
    return sep.join(parts[:s] + parts[e:]), float(kept)


def make_twin(text: str, kind: str, wn: WordNet, rng: random.Random,
              max_jaccard: float) -> Twin | None:
    """The first draw of `kind` at or below `max_jaccard`, rewording harder each try."""
    ops = kind.split("+")
    base = shingles(text)
    for rate in RATES:
        out, kept = text, 1.0
        for op in ops:
            if op.startswith("cut_"):
                out, kept = cut(out, op[4:], rng)
            elif op == "reorder":
                out = reorder(out, rng)
        if "reword" in ops:
            out = reword(out, wn, rate, rng)
        cutting = any(op.startswith("cut_") for op in ops)
        if (cutting and not 0.45 <= kept <= 0.85) or len(tokens(out)) < 5:
            return None  # the document cannot be cut in the intended range
        j = jaccard(base, shingles(out))
        if j <= max_jaccard:
            return Twin(out, kind, j, rate if "reword" in ops else 0.0, kept)
    return None


def lexical_conflicts(texts: list[str], bar: float) -> np.ndarray:
    """Mask of texts to drop so that no two kept ones exceed word-5-gram Jaccard `bar`
    (the later of each pair goes); an inverted index over shingles finds the pairs."""
    sets = [shingles(t) for t in texts]
    posting: dict[tuple, list[int]] = defaultdict(list)
    for i, s in enumerate(sets):
        for g in s:
            posting[g].append(i)
    common: dict[tuple[int, int], int] = defaultdict(int)
    for docs in posting.values():
        if 1 < len(docs) <= 200:  # boilerplate shared by hundreds says nothing of a pair
            for a in range(len(docs)):
                for b in range(a + 1, len(docs)):
                    common[docs[a], docs[b]] += 1
    drop = np.zeros(len(texts), bool)
    for (a, b), inter in sorted(common.items()):
        if drop[a] or drop[b]:
            continue
        if inter / (len(sets[a]) + len(sets[b]) - inter) > bar:
            drop[b] = True
    return drop


def eligible_corpus(samples: Path) -> pa.Table:
    """The corpus without any document of a near-duplicate cluster (size > 1)."""
    files = sorted((samples / "corpus").glob("*.parquet"))
    if not files:
        raise SystemExit(f"no corpus shards in {samples / 'corpus'}")
    corpus = pa.concat_tables(pq.read_table(f, columns=["id", "text", "source"]) for f in files)
    clusters = pq.read_table(samples / "dedup_clusters.parquet", columns=["id", "cluster_size"])
    clustered = {i for i, s in zip(clusters["id"].to_pylist(),
                                   clusters["cluster_size"].to_pylist(), strict=True) if s > 1}
    keep = np.array([i not in clustered for i in corpus["id"].to_pylist()])
    return corpus.filter(pa.array(keep))


def build(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    wn = WordNet(Path(args.wordnet))
    corpus = eligible_corpus(Path(args.samples))
    order = list(range(corpus.num_rows))
    rng.shuffle(order)
    pool_size = min(len(order), int(1.6 * args.twins + 1.15 * args.negatives))
    pool = corpus.take(pa.array(order[:pool_size])).to_pylist()
    drop = lexical_conflicts([r["text"] for r in pool], args.neg_max_jaccard)
    pool = [r for r, d in zip(pool, drop, strict=True) if not d]

    twins, sources, used = [], [], set()
    long_docs = [i for i, r in enumerate(pool) if len(tokens(r["text"])) >= MIN_SOURCE_TOKENS]
    for i in long_docs:
        if len(twins) == args.twins:
            break
        kind = KINDS[len(twins) % len(KINDS)]
        # Each source's draws depend on the seed and its id only, so a changed pool
        # does not change the twins of the sources that stay.
        twin = make_twin(pool[i]["text"], kind, wn, random.Random(f"{args.seed}:{pool[i]['id']}"),
                         args.max_jaccard)
        used.add(i)  # a failed source is not reused as a negative either: it is long
        if twin is not None:
            twins.append(twin)
            sources.append(pool[i])
    negatives = [r for i, r in enumerate(pool) if i not in used][:args.negatives]
    if len(twins) < args.twins or len(negatives) < args.negatives:
        raise SystemExit(f"only {len(twins)} twins and {len(negatives)} negatives could be "
                         "made; ask for fewer")

    rows = [{**r, "role": "negative"} for r in negatives]
    pairs = []
    for src, tw in zip(sources, twins, strict=True):
        twin_id = f"twin:{src['id']}"
        rows.append({**src, "role": "source"})
        rows.append({"id": twin_id, "text": tw.text, "source": src["source"], "role": "twin"})
        pairs.append({"id_a": src["id"], "id_b": twin_id, "kind": tw.kind,
                      "jaccard": tw.jaccard, "reword_rate": tw.rate, "kept_fraction": tw.kept})
    rng.shuffle(rows)
    return write(Path(args.out), rows, pairs, args, given_up=len(used) - len(twins))


def write(out: Path, rows: list[dict], pairs: list[dict], args: argparse.Namespace,
          given_up: int) -> dict:
    (out / "corpus").mkdir(parents=True, exist_ok=True)
    for old in (out / "corpus").glob("part-*.parquet"):
        old.unlink()  # a previous build of this script (other --shards) must not linger
    table = pa.Table.from_pylist(rows)
    per = -(-len(rows) // args.shards)
    for s in range(args.shards):
        pq.write_table(table.slice(s * per, per).select(["id", "text", "source"]),
                       out / "corpus" / f"part-{s:05d}.parquet")
    pq.write_table(table.select(["id", "role"]), out / "roles.parquet")
    truth = pa.Table.from_pylist(pairs)
    pq.write_table(truth, out / "twins.parquet")
    j = truth["jaccard"].to_numpy()
    summary = {
        "params": {k: v for k, v in vars(args).items()},
        "rows": len(rows), "twin_pairs": len(pairs),
        "sources_given_up": given_up,  # no draw of their kind reached the Jaccard bar
        "negatives": sum(r["role"] == "negative" for r in rows),
        "kinds": {k: sum(p["kind"] == k for p in pairs) for k in KINDS},
        "sources": {s: sum(r["source"] == s for r in rows if r["role"] == "source")
                    for s in sorted({r["source"] for r in rows})},
        "jaccard": {"min": float(j.min()), "median": float(np.median(j)),
                    "p90": float(np.quantile(j, 0.9)), "max": float(j.max()),
                    "histogram": dict(zip(["0-0.05", "0.05-0.1", "0.1-0.2", "0.2-0.3"],
                                          np.histogram(j, [0, 0.05, 0.1, 0.2, 0.3 + 1e-9])[0]
                                          .tolist(), strict=True))},
        "kept_fraction_median": float(np.median([p["kept_fraction"] for p in pairs
                                                 if p["kept_fraction"] < 1])),
        "reword_rate": {str(r): sum(p["reword_rate"] == r for p in pairs) for r in RATES},
    }
    (out / "devset.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/curate-semantic-devset")
    ap.add_argument("--samples", default=str(SAMPLES))
    ap.add_argument("--wordnet", default=str(WORDNET))
    ap.add_argument("--twins", type=int, default=400)
    ap.add_argument("--negatives", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-jaccard", type=float, default=0.3,
                    help="largest word-5-gram Jaccard of a twin to its source")
    ap.add_argument("--neg-max-jaccard", type=float, default=0.2,
                    help="largest word-5-gram Jaccard between two originals")
    ap.add_argument("--shards", type=int, default=4)
    args = ap.parse_args()
    if Path(args.out).resolve().is_relative_to(Path(__file__).resolve().parents[1]):
        raise SystemExit("--out must lie outside the repository")
    print(json.dumps(build(args), indent=1))


if __name__ == "__main__":
    main()
