"""Bilingual query expansion: a question's content words in the other language (FreeDict).

BM25 cannot match an English question to Polish notes or the reverse; the dense encoder is
multilingual but weak across languages. With the FreeDict dictionaries installed
(`apt install dict-freedict-eng-pol dict-freedict-pol-eng`, dictd files in /usr/share/dictd),
`Bilingual.translate(question, lang)` gives, for each content word, its dictionary translations:
one group of alternatives per word, which `LexicalIndex.search_groups` scores as synonyms (the
best alternative counts), so a word with ten senses weighs as much as a word with one.

    bi = Bilingual.load(Path("/usr/share/dictd"))     # None when the dictionaries are absent
    bi.translate("Dlaczego nie warto trenować z małym batch size?", "pl")
    # [['why'], ['it is worth'], ['train', 'work out', 'coach', 'teach'], ['little', 'small', 'low'],
    #  ['batch'], ['size']]

dictd format: `NAME.index` has one `headword<TAB>offset<TAB>length` line per entry, the numbers
written in base-64 digits (A-Z a-z 0-9 + /); `NAME.dict.dz` is dictzip, which gzip reads. `load`
reads both whole (7 MB, 0.13 s); an entry is parsed when first looked up and then cached.
"""

from __future__ import annotations

import bisect
import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from notes_rag.errors import NotesRagError
from notes_rag.index.config import DEFAULT_DICT_DIR
from notes_rag.index.lexical import STOPWORDS, LexicalIndex, QueryWord
from notes_rag.index.lexicon import Lexicon
from notes_rag.text import lowercase_words

# dictd file name -> (source language, target language)
DICTIONARIES = {"freedict-eng-pol": ("en", "pl"), "freedict-pol-eng": ("pl", "en")}
DIRECTIONS = {source for source, _target in DICTIONARIES.values()}

_B64 = {ch: i for i, ch in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
# Polish inflected forms are looked up by cutting up to this many letters off the end, never below
# MIN_STEM letters (Polish endings are mostly 1-3 letters: wektor-y, głowic-y, trenowa-nia).
MAX_CUT, MIN_STEM = 3, 4
# Alternatives kept per word: the dictionaries list the common senses first.
MAX_ALTERNATIVES = 8


def dictd_number(digits: str) -> int:
    """A dictd index number: base-64 digits, most significant first ('BAA' = 4096)."""
    n = 0
    for ch in digits:
        n = n * 64 + _B64[ch]
    return n


def read_index(text: str) -> dict[str, list[tuple[int, int]]]:
    """headword -> [(offset, length)] of its entries; dictd's own 00database* entries skipped."""
    index: dict[str, list[tuple[int, int]]] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or parts[0].startswith(("00database", "00-database")):
            continue
        index.setdefault(parts[0], []).append((dictd_number(parts[1]), dictd_number(parts[2])))
    return index


# -- entry parsers (FreeDict's TEI rendered as plain text) ---------------------------------------
_PARENS = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_SENSE_MARK = re.compile(r"^(?:[IVX]+\.\s+)?(?:<[^>]*>\s*)?(?:\d+\.\s*)?(?:[a-z]\.\s+)?")
# A phrase sense: "(:by :train)", "(break V: :the :ice)".
_PHRASE = re.compile(r"\((?:[^()]*\s)?:\w")
_NUMBERED = re.compile(r"^\d+\.\s+\S")
_TRAILING_NUMBER = re.compile(r"\s+\d+\.$")


def _split_alternatives(text: str) -> list[str]:
    """'pociąg, kolejka (rail)' -> ['pociąg', 'kolejka']; a sub-sense letter ('a. liczyć') is
    dropped."""
    text = _PARENS.sub(" ", text)
    out = []
    for alt in re.split(r"[,;/]", text):
        alt = " ".join(re.sub(r"^\s*[a-z]\.\s+", "", alt).split())
        if alt:
            out.append(alt)
    return out


def parse_eng_pol(entry: str) -> list[str]:
    """Polish translations in an eng-pol entry, senses in order. Its shape:
        train /treɪn/
        I.  <N> 1.  pociąg, kolejka
         2.  trenować, ćwiczyć (for sth - do czegoś)
         4.  by train (:by :train)
         - pociągiem, koleją
    Phrase senses ("by train", marked by `(:` or ` :word` in parentheses; "the tarmac  asfalt",
    English then two spaces), their ` - ...` translation lines and quoted examples are skipped:
    they translate the phrase, not the word."""
    out: list[str] = []
    for line in entry.splitlines()[1:]:
        body = line.strip()
        if not body or body.startswith(("-", '"')) or _PHRASE.search(body):
            continue
        body = _SENSE_MARK.sub("", body)
        body = _PARENS.sub(" ", body).strip()
        if not body or re.search(r"\S\s{2,}\S", body) or body.endswith("."):
            continue
        out.extend(_split_alternatives(body))
    return out


def parse_pol_eng(entry: str) -> list[str]:
    """English translations in a pol-eng entry. Each sense is a translation line followed by a
    Polish definition line:
        trenować /trɛnˈɔvatɕ/ <v>
        1. train
        (sport, sportowy) kierować rozwojem sprawności fizycznej sportowca
        2. train, work out
        ...
    A translation line is the first line after the headword or one starting with a sense number;
    a bare number (" 3.") starts a sense with a definition only."""
    out: list[str] = []
    lines = entry.splitlines()[1:]
    for i, line in enumerate(lines):
        body = line.strip()
        if not body or not (i == 0 or _NUMBERED.match(body)):
            continue
        body = _TRAILING_NUMBER.sub("", re.sub(r"^\d+\.\s+", "", body))
        out.extend(_split_alternatives(body))
    return out


_PARSERS = {"en": parse_eng_pol, "pl": parse_pol_eng}


def _english_lemmas(word: str) -> list[str]:
    """Candidate base forms of an English word form, likeliest first: regular plural, past and
    gerund endings with their spelling rules (models, studies, used, stopped, making)."""
    out = []
    if word.endswith("ies") and len(word) > 4:
        out.append(word[:-3] + "y")
    if word.endswith("es"):
        out.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss"):
        out.append(word[:-1])
    for ending in ("ed", "ing"):
        if word.endswith(ending) and len(word) > len(ending) + 2:
            base = word[: -len(ending)]
            out += [base, base + "e"]
            if len(base) > 2 and base[-1] == base[-2]:
                out.append(base[:-1])
            if base.endswith("i"):
                out.append(base[:-1] + "y")
    return out


@dataclass
class Dictionary:
    """One direction of the dictionary: word -> translations, with inflected-form lookup."""

    source: str  # "en" | "pl"
    index: dict[str, list[tuple[int, int]]]
    data: bytes
    _words: list[str] = field(init=False)  # single-word headwords, sorted, for prefix lookup
    _cache: dict[str, list[str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._words = sorted(h for h in self.index if " " not in h)

    @classmethod
    def read(cls, dict_dir: Path, name: str) -> Dictionary | None:
        index_path, data_path = dict_dir / f"{name}.index", dict_dir / f"{name}.dict.dz"
        if not (index_path.is_file() and data_path.is_file()):
            return None
        try:
            with gzip.open(data_path) as f:
                data = f.read()
            index = read_index(index_path.read_text(encoding="utf-8"))
        except (OSError, EOFError, UnicodeDecodeError, KeyError, ValueError) as e:
            raise NotesRagError(
                f"cannot read the dictionary {name} in {dict_dir} ({e.__class__.__name__}: {e}); "
                "reinstall it: apt install --reinstall dict-freedict-eng-pol dict-freedict-pol-eng"
            ) from None
        return cls(DICTIONARIES[name][0], index, data)

    def entry_translations(self, headword: str) -> list[str]:
        """Translations of one headword (all its entries), de-duplicated, in order."""
        if headword not in self._cache:
            found: list[str] = []
            for offset, length in self.index.get(headword, ()):
                text = self.data[offset : offset + length].decode("utf-8", errors="replace")
                found.extend(t for t in _PARSERS[self.source](text) if t.lower() not in found)
            self._cache[headword] = [t.lower() for t in found]
        return self._cache[headword]

    def headwords_for(self, word: str) -> list[str]:
        """The headword(s) a word form belongs to: the word itself if it is one, else its
        lemma by the source language's inflection (`_english_lemmas` / `_polish_lemmas`)."""
        if word in self.index:
            return [word]
        if self.source == "en":
            return next(([h] for h in _english_lemmas(word) if h in self.index), [])
        return self._polish_lemmas(word)

    def _polish_lemmas(self, word: str) -> list[str]:
        """Polish inflects by endings: cut 1..MAX_CUT letters; the cut form if it is a headword,
        else the shortest headwords extending it by at most MAX_CUT letters
        ('głowicy' -> 'głowic' -> 'głowica', 'trenowania' -> 'trenowa' -> 'trenować')."""
        for cut in range(1, MAX_CUT + 1):
            stem = word[:-cut]
            if len(stem) < MIN_STEM:
                break
            if stem in self.index:
                return [stem]
            i = bisect.bisect_left(self._words, stem)
            near = []
            while i < len(self._words) and self._words[i].startswith(stem):
                if len(self._words[i]) <= len(stem) + MAX_CUT:
                    near.append(self._words[i])
                i += 1
            if near:
                return sorted(near, key=lambda h: (len(h), h))[:2]
        return []

    def lookup(self, word: str) -> list[str]:
        """Translations of a (possibly inflected) word; [] when it is not in the dictionary."""
        out: list[str] = []
        for headword in self.headwords_for(word.lower()):
            out.extend(t for t in self.entry_translations(headword) if t not in out)
        return out[:MAX_ALTERNATIVES]


@dataclass
class Bilingual:
    """Both directions; `translate` picks the one for the question's language. The packaged
    lexicon (`lexicon`) is always there; the FreeDict dictionaries add to it when installed."""

    by_source: dict[str, Dictionary]
    lexicon: Lexicon | None = None
    _english_to_polish: dict[str, list[str]] | None = None  # pol-eng read backwards, built at first need

    @classmethod
    def load(cls, dict_dir: Path = DEFAULT_DICT_DIR, lexicon: bool = True, lexicon_path: str = "") -> Bilingual | None:
        """The dictionaries in `dict_dir` and the lexicon (`lexicon_path`, "" for the packaged
        one); None when neither is there."""
        found = {}
        for name, (source, _target) in DICTIONARIES.items():
            d = Dictionary.read(Path(dict_dir), name)
            if d is not None:
                found[source] = d
        lex = (Lexicon.load(Path(lexicon_path)) if lexicon_path else Lexicon.load()) if lexicon else None
        return cls(found, lex) if found or lex else None

    def reverse_lookup(self, word: str, lang: str) -> list[str]:
        """Translations of an English word found through the pol-eng dictionary read backwards:
        the Polish headwords that list it (or its regular base form) as a one-word translation.
        eng-pol has 16k headwords and lacks everyday words (use, create, length, vector) that
        pol-eng's 36k entries translate into. Built at first need (~0.35 s)."""
        pol_eng = self.by_source.get("pl")
        if lang != "en" or pol_eng is None:
            return []
        if self._english_to_polish is None:
            rev: dict[str, list[str]] = {}
            for headword in pol_eng.index:
                if " " not in headword:
                    for t in pol_eng.entry_translations(headword):
                        if " " not in t:
                            rev.setdefault(t, []).append(headword)
            self._english_to_polish = rev
        rev = self._english_to_polish
        form = next((w for w in [word, *_english_lemmas(word)] if w in rev), None)
        return rev[form][:MAX_ALTERNATIVES] if form else []

    def lookup(self, word: str, lang: str) -> list[str]:
        """Translations of one lowercased word: the dictionary's (or, lacking them, pol-eng's read
        backwards), then the lexicon's, de-duplicated."""
        dictionary = self.by_source.get(lang)
        found = (dictionary.lookup(word) or self.reverse_lookup(word, lang)) if dictionary is not None else []
        if self.lexicon is not None:
            found += [t for t in self.lexicon.lookup(word, lang) if t not in found]
        return found[: 2 * MAX_ALTERNATIVES]

    def translate(self, text: str, lang: str) -> list[list[str]]:
        """One group of alternatives per content word of `text` (in `lang`): its translations,
        or the word itself when none is known (names, numbers and technical terms are mostly
        the same in both languages: GPT-3, BERT, batch). [] when no word is translated."""
        if lang not in DIRECTIONS:
            return []
        groups, translated = [], False
        for word in dict.fromkeys(lowercase_words(text)):
            if word in STOPWORDS:
                continue
            # One- and two-letter tokens are symbols and pieces ("s" of "model's", "Wq").
            alternatives = self.lookup(word, lang) if len(word) > 2 else []
            translated |= bool(alternatives)
            groups.append(alternatives or [word])
        return groups if translated else []


def with_translations(lexical: LexicalIndex, words: list[QueryWord], groups: list[list[str]]) -> list[QueryWord]:
    """The question's words (`lexical.query_words`), each found also where a chunk holds one of
    its one-word translations (`groups`: `Bilingual.translate` of the same text, one group per
    content word in the same order), with the idf of that union: the reranker's coverage
    features then count a Polish chunk's words for an English question as they count an English
    chunk's. Unchanged when the groups do not line up with the words."""
    if len(groups) != len(words):
        return words
    n = max(len(lexical.ids), 1)
    out = []
    for w, group in zip(words, groups):
        found = [t for a in group if " " not in a and a != w.word for t in lexical.query_words(a)]
        chunks = w.chunks.union(*(t.chunks for t in found))
        terms = w.terms.union(*(t.terms for t in found))
        idf = float(np.log(1 + (n - len(chunks) + 0.5) / (len(chunks) + 0.5)))
        out.append(QueryWord(w.word, terms, idf if found else w.idf, chunks))
    return out
