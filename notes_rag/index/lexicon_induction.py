"""Induce the packaged English–Polish lexicon from parallel sentence pairs (IBM Model 1).

Runs offline, once, on the kit's Tatoeba pairs (`notes-rag lexicon --kit DIR`); its output is
the small data file `lexicon.Lexicon` reads at query time, so cross-lingual retrieval works
from `pip install` alone, with no dictionary packages and no network.

IBM Model 1 (Brown et al., 1993) learns t(f | e), the probability that word e translates as
word f, by expectation-maximisation over sentence pairs with every alignment equally likely a
priori (plus a NULL word for function words with no counterpart). It is trained both ways and a
pair is kept when it is likely in both (the product of the two directions, "intersection"
symmetrisation): one direction alone keeps frequent companions ("taste" -> "to") that the other
direction rejects.

    pairs = [("I like the taste.", "Lubię ten smak."), ...]
    entries = induce(pairs)        # {"en": {"taste": ["smak", "smaku"]}, "pl": {"smak": ["taste"]}}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from notes_rag.index.lexical import STOPWORDS, stem
from notes_rag.text import lowercase_words

NULL = ""  # the empty word every source sentence carries
PAIRS_FILE = "enpl_parallel_tatoeba.jsonl.xz"  # in the kit's sft/: {"en": ..., "pl": ...} per line


@dataclass(frozen=True)
class InductionConfig:
    iterations: int = 6
    min_count: int = 2  # words seen fewer times have no reliable statistics
    # A translation is kept when t(f|e)·t(e|f) is at least this, and at least `relative` of the
    # word's best translation: low products are chance co-occurrences.
    min_score: float = 0.01
    relative: float = 0.1
    max_alternatives: int = 6


def _ibm1(pairs: list[tuple[list[str], list[str]]], iterations: int) -> dict[str, dict[str, float]]:
    """t[e][f]: probability that source word e is translated as target word f."""
    t: dict[str, dict[str, float]] = {}
    for src, tgt in pairs:
        for e in (NULL, *src):
            row = t.setdefault(e, {})
            for f in tgt:
                row[f] = 1.0
    for row in t.values():  # uniform start
        for f in row:
            row[f] = 1.0 / len(row)
    for _ in range(iterations):
        counts: dict[str, dict[str, float]] = {e: {} for e in t}
        for src, tgt in pairs:
            sources = (NULL, *src)
            for f in tgt:
                probs = [t[e][f] for e in sources]
                total = sum(probs)
                for e, p in zip(sources, probs):
                    c = counts[e]
                    c[f] = c.get(f, 0.0) + p / total
        for e, c in counts.items():
            total = sum(c.values())
            t[e] = {f: v / total for f, v in c.items()}
    return t


def _content_words(text: str) -> list[str]:
    return [w for w in lowercase_words(text) if len(w) > 2 and w not in STOPWORDS and not w.isdigit()]


def induce(
    pairs: Iterable[tuple[str, str]], cfg: InductionConfig = InductionConfig()
) -> dict[str, dict[str, list[str]]]:
    """{"en": {english stem: [polish words, best first]}, "pl": {polish stem: [english words]}}.

    Words are aligned by their BM25 stem (`lexical.stem`), which pools a Polish word's inflected
    forms (smaku, smakiem) the way retrieval matches them; a translation is given as the target
    stem's most frequent form in the pairs. Stopwords are left out before alignment: with
    short sentences they would otherwise absorb most of the probability mass."""
    forms = {"en": Counter(), "pl": Counter()}
    tokenized = []
    for en, pl in pairs:
        words = {"en": _content_words(en), "pl": _content_words(pl)}
        if words["en"] and words["pl"]:
            for lang, ws in words.items():
                forms[lang].update(ws)
            tokenized.append(([stem(w) for w in words["en"]], [stem(w) for w in words["pl"]]))
    count = {lang: Counter() for lang in forms}
    for lang, c in forms.items():
        for w, n in c.items():
            count[lang][stem(w)] += n
    surface = {lang: {} for lang in forms}
    for lang, c in forms.items():
        for w, _n in c.most_common():
            surface[lang].setdefault(stem(w), w)
    en_pl = _ibm1(tokenized, cfg.iterations)
    pl_en = _ibm1([(pl, en) for en, pl in tokenized], cfg.iterations)

    def content(key: str, lang: str) -> bool:
        return count[lang][key] >= cfg.min_count

    out: dict[str, dict[str, list[str]]] = {"en": {}, "pl": {}}
    for src_lang, tgt_lang, forward, backward in (("en", "pl", en_pl, pl_en), ("pl", "en", pl_en, en_pl)):
        for word, row in forward.items():
            if word == NULL or not content(word, src_lang):
                continue
            scored = sorted(
                ((p * backward.get(f, {}).get(word, 0.0), f) for f, p in row.items() if content(f, tgt_lang)),
                reverse=True,
            )
            if not scored or scored[0][0] < cfg.min_score:
                continue
            floor = max(cfg.min_score, cfg.relative * scored[0][0])
            out[src_lang][word] = [surface[tgt_lang][f] for s, f in scored[: cfg.max_alternatives] if s >= floor]
    return out
