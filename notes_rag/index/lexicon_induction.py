"""Induce the packaged English–Polish lexicon from parallel text (IBM Model 1).

Runs offline, once (`kit_pairs` then `induce`); its output is the small data file
`lexicon.Lexicon` reads at query time, so cross-lingual retrieval works from `pip install`
alone, with no dictionary packages and no network. The parallel text (`kit_pairs`):

- the kit's Tatoeba sentence pairs (everyday vocabulary);
- Debian's gettext translations (`/usr/share/locale/pl/LC_MESSAGES/*.mo`: English msgid,
  Polish msgstr; `mo_pairs`): thousands of technical strings (file, key, package, install,
  error, window, settings), aligned by construction. The ISO code lists (country and language
  names) are left out: names, not vocabulary.
- the kit's documents that exist in both languages (Python docs, GNOME help, GNOME apps help,
  the Debian handbook), paired by page and paragraph by `align_data.kit_pairs` (the encoder's
  parallel set), and split into sentence pairs where both paragraphs have as many sentences
  (`document_pairs`): the prose vocabulary of technical writing (function, argument, window).

Never reads the notes or the eval sets.

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

import gettext
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from notes_rag.index.lexical import STOPWORDS, stem
from notes_rag.sft.kit import read_jsonl_xz
from notes_rag.text import lowercase_words, sentence_spans

NULL = ""  # the empty word every source sentence carries
PAIRS_FILE = "enpl_parallel_tatoeba.jsonl.xz"  # in the kit's sft/: {"en": ..., "pl": ...} per line
LOCALE_DIR = Path("/usr/share/locale/pl/LC_MESSAGES")  # Debian's Polish gettext catalogues
# printf / format placeholders and menu accelerators ("_Open", "&File") carry no words
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-+ #0-9.]*[a-zA-Z]|\{[^{}]*\}|[_&](?=\w)|\\n")
MAX_STRING = 300  # longer msgids are help paragraphs whose word statistics dilute IBM Model 1


def mo_pairs(locale_dir: Path = LOCALE_DIR) -> Iterator[tuple[str, str]]:
    """(English, Polish) of every translated singular string of the .mo files in `locale_dir`,
    each distinct pair once; placeholders and accelerators removed. Unreadable files skipped."""
    seen: set[tuple[str, str]] = set()
    for path in sorted(Path(locale_dir).glob("*.mo")):
        if path.name.startswith("iso_"):
            continue
        try:
            with path.open("rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        for msgid, msgstr in catalog.items():
            if not isinstance(msgid, str) or not msgid or not msgstr or len(msgid) > MAX_STRING:
                continue
            pair = (" ".join(_PLACEHOLDER.sub(" ", msgid).split()), " ".join(_PLACEHOLDER.sub(" ", msgstr).split()))
            if pair[0] and pair[0] != pair[1] and pair not in seen:
                seen.add(pair)
                yield pair


def _sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


def document_pairs(pretrain_dir: Path) -> Iterator[tuple[str, str]]:
    """(English, Polish) sentence or paragraph pairs of the kit's documents in both languages:
    aligned paragraphs, cut into sentences where both have as many (word statistics are
    sharper over a sentence than over a paragraph)."""
    from notes_rag.index.align_data import AlignDataConfig, kit_pairs

    for _key, pair in kit_pairs(AlignDataConfig(kit_dir=Path(pretrain_dir))):
        en, pl = _sentences(pair.en), _sentences(pair.pl)
        yield from zip(en, pl) if len(en) == len(pl) > 1 else [(pair.en, pair.pl)]


def kit_pairs(kit: Path, locale_dir: Path = LOCALE_DIR) -> Iterator[tuple[str, str]]:
    """Every (English, Polish) pair the lexicon is induced from: Tatoeba, the .mo strings and the
    kit's bilingual documents (module docstring); `kit` is the data kit folder (sft/, pretrain/)."""
    yield from ((r["en"], r["pl"]) for r in read_jsonl_xz(Path(kit) / "sft" / PAIRS_FILE))
    yield from mo_pairs(locale_dir)
    yield from document_pairs(Path(kit) / "pretrain")


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
