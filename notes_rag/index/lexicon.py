"""The packaged English–Polish lexicon: word translations that need no dictionary install.

`lexicon-en-pl.tsv` beside this module is induced by `lexicon_induction` from the training
kit's Tatoeba sentence pairs (CC BY 2.0 FR, "Tatoeba.org contributors"), Debian's Polish
gettext catalogues and the kit's documents in both languages (Python docs, GNOME help, the
Debian handbook); the file's header names them and their licences. One line per source stem:

    lang<TAB>stem<TAB>translation translation ...     (lang: the source language, en | pl)

Lookups go through the BM25 stem (`lexical.stem`), so any inflected form of a word finds its
entry: "smaku", "smakiem" -> "smak" -> flavor, tastes.

    lex = Lexicon.load()
    lex.lookup("taste", "en")      # ['smakuje', 'smakowało', 'gusta', 'posmakuj', 'smak']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_text
from notes_rag.index.lexical import stem

PACKAGED = Path(__file__).with_name("lexicon-en-pl.tsv")
HEADER = (
    "# English-Polish word lexicon for notes-rag, induced with IBM Model 1 (notes_rag/index/lexicon_induction.py)\n"
    "# from Tatoeba sentence pairs (Tatoeba.org contributors, CC BY 2.0 FR, via the manythings.org eng-pol export),\n"
    "# Debian bookworm's Polish gettext catalogues (/usr/share/locale/pl/LC_MESSAGES/*.mo, each package's licence),\n"
    "# and the kit's documents in both languages: Python 3.11 docs and python-docs-pl (PSF License 2),\n"
    "# GNOME help and GNOME apps help (CC BY-SA 3.0), the Debian handbook (CC BY-SA 3.0).\n"
    "# lang<TAB>stem<TAB>translations, best first\n"
)


@dataclass(frozen=True)
class Lexicon:
    entries: dict[str, dict[str, list[str]]]  # source lang -> stem -> translations

    @classmethod
    def load(cls, path: Path = PACKAGED) -> Lexicon:
        entries: dict[str, dict[str, list[str]]] = {"en": {}, "pl": {}}
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise NotesRagError(f"cannot read the lexicon {path}: {e}") from None
        for n, line in enumerate(lines, start=1):
            if not line or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 3 or parts[0] not in entries:
                raise NotesRagError(f"{path}:{n}: not a lexicon line (lang<TAB>stem<TAB>translations)")
            entries[parts[0]][parts[1]] = parts[2].split()
        return cls(entries)

    def lookup(self, word: str, lang: str) -> list[str]:
        """Translations of a lowercased word of language `lang`; [] when it has none."""
        return self.entries.get(lang, {}).get(stem(word), [])

    def save(self, path: Path) -> None:
        body = "".join(
            f"{lang}\t{key}\t{' '.join(words)}\n"
            for lang in sorted(self.entries)
            for key, words in sorted(self.entries[lang].items())
        )
        atomic_write_text(Path(path), HEADER + body)
