"""spaCy's rule-based English tokenizer, re-implemented without spaCy: one whitespace-free
chunk of text in, its tokens out (`split_chunk`).

Gopher's and FineWeb's word statistics depend on what a "word" is. The reference
implementation we are compared with (datatrove, `utils/word_tokenizers.py`) uses spaCy's
rule-based English tokenizer (`spacy.blank("en")`), which splits punctuation off words
("end." -> "end", ".") and splits contractions ("don't" -> "do", "n't"). Punctuation tokens
then count as words in every ratio whose denominator is "words" (symbol ratio, alphabetic
fraction, newline/word ratio), so a plain whitespace split changes those rules materially.

This module re-implements that tokenizer's published rule set (prefix, suffix and infix
patterns and the English special cases; spaCy `lang/punctuation.py`, `lang/char_classes.py`,
`lang/en/tokenizer_exceptions.py`) in a compact form, without depending on spaCy:

1. split on whitespace (spaCy never joins across whitespace; done in `words.py`);
2. per whitespace chunk: repeatedly strip one prefix and one suffix, stopping at a special
   case; the remaining core is kept whole if it is a special case or looks like a URL, else
   split at infixes (hyphens between letters, "/" ":" "=" "<" ">" before a letter, ...).

   Special cases that the affix rules would split (":)", "''", "'s") are then matched as
   token sequences inside the chunk, longest first, as spaCy's special-case matcher does.

On the sample corpus (3.18M tokens) the output equals spaCy's token for token
(benchmarks/quality.md). Known gaps: the special-case list leaves out US-state and month
abbreviations ("Ala.", "Jan."), the "icon" class approximates Unicode So, and spaCy's
whitespace tokens are emulated only where they matter (C4's sentence count, `words.py`).
"""

from __future__ import annotations

import re

# --- character classes (spaCy char_classes.py, English subset) ----------------------------

_PUNCT = "…,:;!?¿؟¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪"
_QUOTES = "'\"”“`‘´’‚,„»«「」『』（）〔〕【】《》〈〉〈〉⟦⟧"
_CURRENCY = "$£€¥฿₽﷼₴₠₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₵₶₷₸₹₺₻₼₾₿"
# "Other symbol" ranges that spaCy treats as standalone tokens (arrows, box drawing,
# dingbats, emoji, ...): a hand-picked approximation of its LIST_ICONS.
_ICONS = ("\u00a6\u00a9\u00ae\u00b0\u0482\u058d\u058e\u060e\u060f\u06de\u06e9\u06fd\u06fe"
          "\u07f6\u09fa\u0b70\u0bf3-\u0bf8\u0bfa\u0c7f\u0d4f\u0d79\u0f01-\u0f03\u0f13-\u0f17"
          "\u0f1a-\u0f1f\u0f34\u0f36\u0f38\u0fbe-\u0fc5\u0fc7-\u0fcf\u0fd5-\u0fd8\u109e\u109f"
          "\u1390-\u1399\u1940\u19de-\u19ff\u1b61-\u1b6a\u1b74-\u1b7c\u2100-\u214f\u2190-\u21ff\u2300-\u23ff"
          "\u2400-\u24ff\u2500-\u27bf\u2800-\u28ff\u2b00-\u2bff\u2e80-\u2fff\u3004\u3012"
          "\u3013\u3020\u3036\u3037\u303e\u303f\u3190-\u319f\u31c0-\u31ef\u3200-\u33ff"
          "\u4dc0-\u4dff\ua490-\ua4c6\ufdfd\uffe4\uffe8\uffed\uffee\ufffc\ufffd"
          "\U0001d000-\U0001d24f\U0001d300-\U0001d35f\U0001f000-\U0001faff")
_UNITS = ("km²", "km³", "km", "cm²", "cm³", "cm", "mm²", "mm³", "mm", "dm²", "dm³", "dm", "m²",
          "m³", "m/s", "m", "ha", "µm", "nm", "yd", "in", "ft", "kg", "g", "mg", "µg", "t", "lb",
          "oz", "km/h", "kmh", "mph", "hPa", "Pa", "mbar", "mb", "MB", "kb", "KB", "gb", "GB", "tb",
          "TB", "T", "G", "M", "K", "%")
_LOWER = "a-zµß-öø-ÿα-ωά-ώа-яё-џ"
_UPPER = "A-ZÀ-ÖØ-ÞΑ-ΩΆ-ΏА-ЯЀ-Џ"

_esc = re.escape


def _cls(chars: str) -> str:
    return "".join(_esc(c) for c in dict.fromkeys(chars))


_PREFIX_RE = re.compile(
    r"(?:US\$|C\$|A\$|\.\.+|[§%=—–]|\+(?![0-9])|[" + _cls(_PUNCT + _QUOTES + _CURRENCY) + "]"
    + "|[" + _ICONS + "])"
)
_SUFFIX_RE = re.compile(
    r"(?:\.\.+|……|'s|'S|’s|’S|[" + _cls(_PUNCT + _QUOTES + "—–") + "]|[" + _ICONS + "]"
    + r"|(?<=[0-9])\+|(?<=°[FfCcKk])\."
    + r"|(?<=[0-9])(?:[" + _cls(_CURRENCY) + "]|" + "|".join(_esc(u) for u in _UNITS) + ")"
    # ("|" is in spaCy's class by accident of how it is built; kept for fidelity)
    + r"|(?<=[0-9" + _LOWER + r"%²\-+|" + _cls(_PUNCT + _QUOTES) + r"])\."
    + r"|(?<=[" + _UPPER + "][" + _UPPER + r"])\.)$"
)
_INFIX_RE = re.compile(
    r"\.\.+|…|[" + _ICONS + r"]|(?<=[0-9])[+\-*^](?=[0-9-])"
    + r"|(?<=[" + _LOWER + _cls(_QUOTES) + r"])\.(?=[" + _UPPER + _cls(_QUOTES) + "])"
    + r"|(?<=[^\W\d_]),(?=[^\W\d_])"  # letter , letter
    + r"|(?<=[^\W_])(?:---|--|——|[-–—~])(?=[^\W\d_])"  # letter/digit - letter
    + r"|(?<=[^\W_])[:<>=/](?=[^\W\d_])"
)
# A core without any of these characters has no infix (cheap pre-check).
_INFIX_HINT = re.compile(r"[.…,:<>=/+*^~\-–—" + _ICONS + "]")
# Hosts with a lower-case TLD, optional scheme, user, port and path (spaCy URL_MATCH, minus
# the IP-address branch).
_URL_RE = re.compile(
    r"(?:[\w+\-.]{2,}://)?(?:\S+(?::\S*)?@)?"
    r"(?:(?:[A-Za-z0-9\u00a1-\uffff][A-Za-z0-9\u00a1-\uffff_-]{0,62})?[A-Za-z0-9\u00a1-\uffff]\.)+"
    r"(?P<tld>[^\W\d_]{2,63})(?::\d{2,5})?(?:[/?#]\S*)?"
)


def _is_url(s: str) -> bool:
    m = _URL_RE.fullmatch(s)
    return m is not None and m.group("tld").islower()  # a lower-case TLD only


# --- special cases (spaCy lang/tokenizer_exceptions.py + lang/en/tokenizer_exceptions.py) --

def _special_cases() -> dict[str, tuple[str, ...]]:
    sp: dict[str, tuple[str, ...]] = {}

    def add(*parts: str) -> None:
        sp["".join(parts)] = parts

    def titled(*parts: str) -> None:
        add(*parts)
        add(parts[0][:1].upper() + parts[0][1:], *parts[1:])

    for p in ("'", "''", "C++", "\\n", "\\t", '\\")', "<space>", "\u2014"):
        add(p)
    for c in "abcdefghijklmnopqrstuvwxyzäöü":
        add(c + ".")
    emoticons = (
        ":) :-) :)) :-)) :))) :-))) (: (-: =) (= :] :-] [: [-: [= =] :o) (o: :} :-} 8) 8-) (-8 "
        ";) ;-) (; (-; :( :-( :(( :-(( :((( :-((( ): )-: =( >:( :') :'-) :'( :'-( :/ :-/ =/ =| "
        ":| :-| ]= =[ :1 :P :-P :p :-p :O :-O :o :-o :0 :-0 :() >:o :* :-* :3 :-3 =3 :> :-> "
        ":X :-X :x :-x :D :-D ;D ;-D =D xD XD xDD XDD 8D 8-D ^_^ ^__^ ^___^ >.< >.> <.< ._. "
        ";_; -_- -__- v.v V.V v_v V_V o_o o_O O_o O_O 0_o o_0 0_0 o.O O.o O.O o.o 0.0 o.0 0.o "
        "@_@ <3 <33 <333 </3 (^_^) (-_-) (._.) (>_<) (*_*)"
    )
    for e in emoticons.split():
        add(e)
    # pronoun contractions, with and without the apostrophe
    for a in ("'", ""):
        titled("i", a + "m")
        titled("i", a + "m", "a")
        for pron in ("i", "you", "he", "she", "it", "we", "they"):
            titled(pron, a + "ll")
            titled(pron, a + "ll", a + "ve")
            titled(pron, a + "d")
            titled(pron, a + "d", a + "ve")
        for pron in ("i", "you", "we", "they"):
            titled(pron, a + "ve")
        for pron in ("you", "we", "they"):
            titled(pron, a + "re")
        for pron in ("he", "she", "it"):
            titled(pron, a + "s")
        for w in ("who", "what", "when", "where", "why", "how", "there", "that", "this",
                  "these", "those"):
            if w not in ("these", "those"):
                titled(w, a + "s")
            titled(w, a + "ll")
            titled(w, a + "ll", a + "ve")
            titled(w, a + "re")
            titled(w, a + "ve")
            titled(w, a + "d")
            titled(w, a + "d", a + "ve")
        for v in ("ca", "could", "do", "does", "did", "had", "may", "might", "must", "need",
                  "ought", "sha", "should", "wo", "would", "ai", "are", "is", "was", "were",
                  "have", "has", "dare"):
            titled(v, "n't" if a else "nt")
        for v in ("ca", "could", "do", "does", "did", "had", "may", "might", "must", "need",
                  "ought", "sha", "should", "wo", "would"):
            titled(v, "n't" if a else "nt", a + "ve")
        for v in ("could", "might", "must", "should", "would"):
            titled(v, a + "ve")
    for w in ("doin", "goin", "nothin", "nuthin", "ol", "somethin"):
        titled(w)
        titled(w + "'")
    for w in ("em", "ll", "nuff"):
        add(w)
        add("'" + w)
    for h in range(1, 13):
        for period in ("a.m.", "am", "p.m.", "pm"):
            add(str(h), period)
    add("y'", "all")
    add("y", "all")
    for parts in (("not", "'ve"), ("not", "ve"), ("can", "not"),
                  ("gon", "na"), ("got", "ta"), ("let", "'s"), ("c'm", "on")):
        titled(*parts)
    titled("how", "'d", "'y")
    for w in ("'S", "'s", "\u2018S", "\u2018s", "and/or", "w/o", "'re", "'Cause", "'cause",
              "'cos", "'Cos", "'coz", "'Coz", "'cuz", "'Cuz", "'bout", "ma'am", "Ma'am", "o'clock",
              "O'clock", "lovin'", "Lovin'", "lovin", "Lovin", "havin'", "Havin'", "havin",
              "Havin", "goin'", "Goin'", "'d", "a.m.", "Adm.", "Bros.", "co.", "Co.", "Corp.",
              "D.C.", "Dr.", "e.g.", "E.g.", "E.G.", "Gen.", "Gov.", "i.e.", "I.e.", "I.E.",
              "Inc.", "Jr.", "Ltd.", "Md.", "Messrs.", "Mo.", "Mont.", "Mr.", "Mrs.", "Ms.",
              "p.m.", "Ph.D.", "Prof.", "Rep.", "Rev.", "Sen.", "St.", "vs.", "v.s."):
        add(w)
    for w in ("Ill", "ill", "Its", "its", "Hell", "hell", "Shell", "shell", "Shed", "shed",
              "were", "Were", "Well", "well", "Whore", "whore"):
        sp.pop(w, None)
    # every apostrophe form also with the typographic apostrophe
    for key, parts in list(sp.items()):
        if "'" in key:
            sp.setdefault(key.replace("'", "’"), tuple(p.replace("'", "’") for p in parts))
    return sp


SPECIAL_CASES = _special_cases()


def split_chunk(s: str) -> list[str]:
    """Tokens of one whitespace-free chunk, following spaCy's English affix rules."""
    if s in SPECIAL_CASES:
        return list(SPECIAL_CASES[s])
    # fast path, same result as the rules: letters plus one closing mark ("word," "word.")
    head = s[:-1]
    if head.isalpha() and head not in SPECIAL_CASES and (
            s[-1] in _SIMPLE_END or (s[-1] == "." and "a" <= s[-2] <= "z")):
        return [head, s[-1]]
    out = _split_affixes(s, True)
    return _merge_specials(out) if len(out) > 1 else out


def _suffix_len(s: str) -> int:
    """Length of the leftmost suffix match that ends the string (0 if none)."""
    n = len(s)
    if n > 1 and s[-1] == "." and s[-2] == ".":
        return n - len(s.rstrip("."))  # a run of dots is one suffix and starts leftmost
    # every other suffix is at most 4 characters; lookbehinds may see before `pos`
    m = _SUFFIX_RE.search(s, max(0, n - 5))
    return m.end() - m.start() if m else 0


_SIMPLE_END = frozenset(",;:!?)]}\"'")


def _split_affixes(s: str, specials: bool) -> list[str]:
    sp = SPECIAL_CASES if specials else {}
    prefixes: list[str] = []
    suffixes: list[str] = []
    while s:
        last = len(s)
        m = _PREFIX_RE.match(s)
        pre = m.end() if m else 0
        if pre and s[pre:] in sp:
            prefixes.append(s[:pre])
            s = s[pre:]
            break
        suf = _suffix_len(s[pre:] if pre else s)
        if suf and s[:-suf] in sp:
            suffixes.append(s[-suf:])
            s = s[:-suf]
            break
        if pre and suf and pre + suf <= len(s):
            prefixes.append(s[:pre])
            suffixes.append(s[-suf:])
            s = s[pre:-suf]
        elif pre:
            prefixes.append(s[:pre])
            s = s[pre:]
        elif suf:
            suffixes.append(s[-suf:])
            s = s[:-suf]
        if len(s) == last or s in sp:
            break
    out: list[str] = []
    for p in prefixes:
        out.extend(sp.get(p, (p,)))
    if s:
        if s in sp:
            out.extend(sp[s])
        elif _INFIX_HINT.search(s) is None or _is_url(s):
            out.append(s)
        else:
            start = 0
            for m in _INFIX_RE.finditer(s):
                a, b = m.span()
                if a == 0:  # an infix at the very start is not a split point
                    continue
                if a != start:
                    out.append(s[start:a])
                if a != b:
                    out.append(s[a:b])
                start = b
            if start < len(s):
                out.append(s[start:])
    for p in reversed(suffixes):
        out.extend(sp.get(p, (p,)))
    return out


# Special cases that the affix rules would split (":)" -> ":", ")") are also matched as
# token sequences inside a chunk, e.g. "f():" -> "f", "(", "):" (spaCy's special matcher;
# longest match first, then leftmost, non-overlapping).
_SPECIAL_SEQS: dict[tuple[str, ...], str] = {}
for _k in SPECIAL_CASES:
    _seq = tuple(_split_affixes(_k, False))
    if len(_seq) > 1:
        _SPECIAL_SEQS[_seq] = _k
_SEQ_LENGTHS: dict[str, list[int]] = {}
for _seq in _SPECIAL_SEQS:
    _SEQ_LENGTHS.setdefault(_seq[0], []).append(len(_seq))


def _merge_specials(toks: list[str]) -> list[str]:
    n = len(toks)
    found = [(k, i, i + k) for i, t in enumerate(toks) if t in _SEQ_LENGTHS
             for k in _SEQ_LENGTHS[t] if i + k <= n and tuple(toks[i:i + k]) in _SPECIAL_SEQS]
    if not found:
        return toks
    taken: set[int] = set()
    keep = []
    for _, i, j in sorted(found, key=lambda f: (-f[0], f[1])):
        if i not in taken and j - 1 not in taken:
            keep.append((i, j))
        taken.update(range(i, j))
    out: list[str] = []
    pos = 0
    for i, j in sorted(keep):
        out.extend(toks[pos:i])
        out.extend(SPECIAL_CASES[_SPECIAL_SEQS[tuple(toks[i:j])]])
        pos = j
    out.extend(toks[pos:])
    return out
