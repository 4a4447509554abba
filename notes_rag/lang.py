"""Polish-or-English detection for questions, answers and passages.

Polish diacritics are decisive; otherwise a vote of common function words and question words
decides. Short follow-ups ("A Llama 3?") carry no evidence either way, so the caller passes the
conversation's language as `default` and gets it back when the vote is a tie.
"""

from __future__ import annotations

import re

_PL_LETTERS = set("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ")

# Words that are frequent in one language and absent (or rare) in the other. "a", "to", "i",
# "no" are left out: they are words in both.
_PL_WORDS = frozenset(
    """
    w z ze na od po za przez przy dla jest są był była było były być się nie tak czy co
    jak jaki jaka jakie jakich kto kim czym czego kiedy gdzie ile dlaczego czemu który która
    które którego oraz lub albo ale także też jego jej ich tego tej ten ta te mi mnie moje
    moich moja mój notatkach notatki notatek oznacza opisz wyjaśnij wymień podaj jeszcze
    według między można trzeba bardzo więc tylko już czyli
    """.split()
)
_EN_WORDS = frozenset(
    """
    the of and is are was were be been in on at by for with from this that these those what
    which who whom whose when where why how does do did can could should would will my your
    about explain describe list give notes note it its an or not also than then there their
    they have has had according
    """.split()
)
_WORD = re.compile(r"[^\W\d_]+")


def detect_lang(text: str, default: str | None = None) -> str:
    """ "pl" or "en"; `default` (else "en") when the text gives no evidence either way."""
    pl = 2 * sum(ch in _PL_LETTERS for ch in text)
    en = 0
    for w in _WORD.findall(text.lower()):
        pl += w in _PL_WORDS
        en += w in _EN_WORDS
    if pl > en:
        return "pl"
    if en > pl:
        return "en"
    return default or "en"
