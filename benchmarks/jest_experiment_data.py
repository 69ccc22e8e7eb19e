"""Real text pairs for the JEST experiment (benchmarks/jest_experiment.py): Debian bookworm
package descriptions, short description -> long description, embedded once with the
packaged all-MiniLM-L6-v2 (short.npy / long.npy: the reference's vectors) and once with
curate's `static` backend (short_static.npy / long_static.npy: a model2vec distillation of
the same MiniLM, much weaker, the learner's frozen part by default), cached as .npy.

    .venv/bin/python benchmarks/jest_experiment_data.py --work /tmp/curate-jest

Source: apt's `Translation-en` index of Debian bookworm `main` (records `Package:`,
`Description-md5:`, `Description-en: <short>`, then the long description as lines that
start with a space, ` .` marking a blank line). It is on any Debian machine after
`apt-get update -o Acquire::Languages=en`; `read_translation` runs that itself when the
file is missing (it needs apt and root). It is not one of the contamination sets.

Deduplication (`dedupe`), in this order, each counted in pairs.json:
- long descriptions under `MIN_WORDS` words are dropped (trivial: "This package contains
  the debugging symbols");
- one pair per long description, per *first paragraph* of the long description (package
  families such as foo / foo-data / foo-doc repeat the first paragraph and append one
  line; only openings of `MIN_WORDS`+ words count) and per short description with any
  trailing "(...)" removed (case-folded): a held-out test pair must not have a near twin
  among the candidates or in training.

Token ids (`tokens.npz`, for the learner's bag-of-words tower): each text's distinct
lower-cased alphanumeric words, in first-occurrence order, at most `MAX_WORDS`, each as its
CRC-32 (stdlib zlib, so the ids are the same in every process and on every machine; the
experiment takes them modulo its number of hash buckets). Stored ragged: `<side>_ids`
(uint32) and `<side>_offsets` (int64, len(texts) + 1) for side short and long.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np

TRANSLATION = Path("/var/lib/apt/lists/"
                   "deb.debian.org_debian_dists_bookworm_main_i18n_Translation-en.lz4")
APT_HELPER = "/usr/lib/apt/apt-helper"
MIN_WORDS = 15
MAX_TOKENS = 128  # long descriptions are cut to 128 word-pieces to save CPU
DEFAULT_WORK = Path("/tmp/curate-jest")
MAX_WORDS = 256  # distinct words kept per text for the bag-of-words tower
WORD = re.compile(r"[0-9a-z]+")


def read_translation(path: Path = TRANSLATION) -> str:
    """The decompressed Translation-en text; runs apt-get update first if it is missing."""
    if not path.exists():
        subprocess.run(["apt-get", "update", "-o", "Acquire::Languages=en"], check=True)
    if not path.exists():
        raise FileNotFoundError(f"{path} is still missing after apt-get update; is deb.debian.org "
                                "bookworm main in the apt sources?")
    return subprocess.run([APT_HELPER, "cat-file", str(path)], check=True,
                          capture_output=True, text=True).stdout


def parse_records(text: str) -> list[tuple[str, str, str]]:
    """(package, short, long) per record; the long description's ` .` lines become
    paragraph breaks and its other lines are joined with spaces."""
    out = []
    for block in text.split("\n\n"):
        package, short, body, in_desc = None, None, [], False
        for line in block.split("\n"):
            if line.startswith("Package: "):
                package = line[len("Package: "):].strip()
            elif line.startswith("Description-en: "):
                short, in_desc = line[len("Description-en: "):].strip(), True
            elif in_desc and line.startswith(" "):
                body.append(line[1:])
            elif line and not line.startswith(" "):
                in_desc = False
        if package and short:
            out.append((package, short, _join_long(body)))
    return out


def _join_long(lines: list[str]) -> str:
    paragraphs, cur = [], []
    for line in lines:
        if line.strip() == ".":
            if cur:
                paragraphs.append(" ".join(cur))
            cur = []
        else:
            cur.append(line.strip())
    if cur:
        paragraphs.append(" ".join(cur))
    return "\n".join(paragraphs)


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().casefold()


def short_key(short: str) -> str:
    """The short description without a trailing "(...)" qualifier, case-folded."""
    return _norm(re.sub(r"\s*\([^()]*\)\s*$", "", short))


def dedupe(records: list[tuple[str, str, str]]) -> tuple[list[tuple[str, str, str]], dict]:
    """Keep the first record of each long text, first paragraph and short key (order of the
    index, which is by package name); return the kept records and the counts."""
    counts = {"records": len(records), "trivial_long": 0, "dup_long": 0,
              "dup_first_paragraph": 0, "dup_short": 0}
    seen_long, seen_para, seen_short, kept = set(), set(), set(), []
    for rec in records:
        _, short, long = rec
        if len(long.split()) < MIN_WORDS:
            counts["trivial_long"] += 1
            continue
        first = long.split("\n")[0]
        # a short generic opening ("Features include:") is no sign of a package family
        pk = _norm(first) if len(first.split()) >= MIN_WORDS else None
        lk, sk = _norm(long), short_key(short)
        for key, seen, name in ((lk, seen_long, "dup_long"), (pk, seen_para, "dup_first_paragraph"),
                                (sk, seen_short, "dup_short")):
            if key is not None and key in seen:
                counts[name] += 1
                break
        else:
            seen_long.add(lk)
            if pk is not None:
                seen_para.add(pk)
            seen_short.add(sk)
            kept.append(rec)
    counts["kept"] = len(kept)
    return kept, counts


def words(text: str, max_words: int = MAX_WORDS) -> list[str]:
    """The distinct lower-cased alphanumeric words of `text`, first occurrence first."""
    return list(dict.fromkeys(WORD.findall(text.casefold())))[:max_words]


def word_hash(word: str) -> int:
    """A word's id: CRC-32 of its UTF-8 bytes (deterministic, unlike Python's hash())."""
    return zlib.crc32(word.encode("utf-8"))


def token_ids(texts: list[str], max_words: int = MAX_WORDS) -> tuple[np.ndarray, np.ndarray]:
    """Ragged word ids of `texts`: (ids uint32, offsets int64 of len(texts) + 1); text i's
    ids are ids[offsets[i]:offsets[i + 1]]."""
    per_text = [[word_hash(w) for w in words(t, max_words)] for t in texts]
    offsets = np.zeros(len(texts) + 1, np.int64)
    offsets[1:] = np.cumsum([len(x) for x in per_text])
    ids = np.fromiter((h for x in per_text for h in x), np.uint32, count=int(offsets[-1]))
    return ids, offsets


def build_tokens(work: Path, meta: dict | None = None) -> Path:
    """tokens.npz in `work` from pairs.json (cheap: a few CPU seconds)."""
    out = work / "tokens.npz"
    if not out.exists():
        meta = meta or json.loads((work / "pairs.json").read_text())
        arrays = {}
        for side in ("short", "long"):
            arrays[f"{side}_ids"], arrays[f"{side}_offsets"] = token_ids(meta[side])
        np.savez(out, max_words=MAX_WORDS, **arrays)
    return out


def embed_all(texts: list[str], out: Path, backend: str, max_tokens: int | None,
              threads: int, batch: int = 512) -> dict:
    """Embed `texts` into `out` (.npy, float32, L2-normalised) in resumable parts."""
    from operators.embed.backends import load_encoder

    if out.exists():
        return {"cached": True}
    enc = load_encoder(None, backend, max_tokens=max_tokens, threads=threads)
    parts_dir = out.with_suffix(".parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    done_new = 0
    for start in range(0, len(texts), batch):
        part = parts_dir / f"{start:08d}.npy"
        if part.exists():
            continue
        np.save(part, enc.encode(texts[start:start + batch], batch_size=32))
        done_new += min(batch, len(texts) - start)
        print(f"{out.name}: {start + batch}/{len(texts)} "
              f"{done_new / max(time.process_time() - cpu0, 1e-9):.1f} texts/CPU-s", flush=True)
    vecs = np.concatenate([np.load(parts_dir / f"{s:08d}.npy")
                           for s in range(0, len(texts), batch)])
    np.save(out, vecs)
    for p in parts_dir.iterdir():
        p.unlink()
    parts_dir.rmdir()
    return {"cached": False, "texts": len(texts), "cpu_s": time.process_time() - cpu0,
            "wall_s": time.perf_counter() - wall0, "backend": backend,
            "model": enc.model_id, "max_tokens": enc.max_tokens}


def build(work: Path, backend: str, threads: int, static: bool = True) -> dict:
    """pairs.json (texts + dedup counts), tokens.npz, short.npy / long.npy (`backend`) and,
    with `static`, short_static.npy / long_static.npy in `work`."""
    work.mkdir(parents=True, exist_ok=True)
    pairs_path = work / "pairs.json"
    if pairs_path.exists():
        meta = json.loads(pairs_path.read_text())
    else:
        kept, counts = dedupe(parse_records(read_translation()))
        meta = {"source": str(TRANSLATION), "min_words": MIN_WORDS, "counts": counts,
                "package": [r[0] for r in kept], "short": [r[1] for r in kept],
                "long": [r[2] for r in kept]}
        pairs_path.write_text(json.dumps(meta))
    print(json.dumps(meta["counts"]), flush=True)
    build_tokens(work, meta)
    meta["embed_short"] = embed_all(meta["short"], work / "short.npy", backend, None, threads)
    meta["embed_long"] = embed_all(meta["long"], work / "long.npy", backend, MAX_TOKENS, threads)
    keys = ["embed_short", "embed_long"]
    if static:
        # the same caps as MiniLM's (long texts cut at 128 word-pieces), so the two frozen
        # encoders see the same text
        meta["embed_short_static"] = embed_all(meta["short"], work / "short_static.npy",
                                               "static", None, threads)
        meta["embed_long_static"] = embed_all(meta["long"], work / "long_static.npy", "static",
                                              MAX_TOKENS, threads)
        keys += ["embed_short_static", "embed_long_static"]
    (work / "embed.json").write_text(json.dumps({k: meta[k] for k in keys}))
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--backend", default="openvino")  # bf16; jest.md says why
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--no-static", dest="static", action="store_false",
                    help="skip the static-backend vectors (the default learner needs them)")
    args = ap.parse_args()
    build(args.work, args.backend, args.threads, args.static)


if __name__ == "__main__":
    main()
