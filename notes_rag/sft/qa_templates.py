"""The question templates of the QA generator (sft/qa_generator.py): sentence patterns that make
a question, the filters that keep the asked term grammatical, and the question wordings.
`sentence_items` turns one sentence into candidate questions; the answer is always the sentence.
"""

from __future__ import annotations

import random
import re
from collections import Counter

_CAP = "A-ZĄĆĘŁŃÓŚŹŻ"
_TW = r"[\w.+#/'’-]+"  # a term word: letters, digits and the punctuation of tech names (C++, C#, Node.js)
_TERM = rf"[{_CAP}0-9]{_TW[:-1]}*(?: {_TW}){{0,3}}?"
_EN_TERM = rf"(?:(?:The|An|A) {_TW}(?: {_TW}){{0,2}}?|{_TERM})"  # "A decorator", "The standard library"
_PAREN = r"\((?P<paren>[^()]{0,200})\)"

_PL_DASH = re.compile(rf"^(?P<term>{_TERM})\s*(?:{_PAREN}\s*)?\s[–—-]\s+(?P<rest>\S.{{10,}})$", re.S)
_PL_COPULA = re.compile(
    rf"^(?P<term>{_TERM})\s*(?:\([^()]{{0,120}}\)\s*)?\s(?P<verb>jest to|są to|to|jest|są)\s+(?P<rest>\S.{{10,}})$",
    re.S,
)
_EN_DEF = re.compile(
    rf"^(?P<term>{_EN_TERM})\s(?:\([^()]{{0,120}}\)\s)?(?P<verb>is|are)\s"
    r"(?P<rest>(?:a|an|the|one|any|used|defined|called)\b.{10,})$",
    re.S,
)
_PL_ENUM_VERBS = (
    "obejmuje|obejmują|zawiera|zawierają|składa się z|składają się z|umożliwia|umożliwiają|oferuje|oferują|"
    "obsługuje|obsługują|udostępnia|udostępniają|wspiera|wspierają"
)
_PL_ENUM = re.compile(rf"^(?P<subj>{_TERM})\s(?P<verb>{_PL_ENUM_VERBS})\s(?P<rest>.{{10,}})$", re.S)
_EN_ENUM_VERBS = (
    "includes|include|contains|contain|consists of|consist of|supports|support|provides|provide|offers|offer"
)
_EN_ENUM = re.compile(rf"^(?P<subj>{_EN_TERM})\s(?P<verb>{_EN_ENUM_VERBS})\s(?P<rest>.{{10,}})$", re.S)
_PL_WHEN = re.compile(
    rf"^(?P<subj>{_TERM})\s(?P<aux>został|została|zostało|zostały|zostali)\s(?P<part>(?:wydan|wprowadzon|założon|"
    r"utworzon|opublikowan|stworzon|zbudowan|otwart|odkryt|napisan|zaprojektowan|uruchomion|powołan|wybudowan)\w*)"
    r"\s(?:w|we)\s(?:roku\s)?(?P<y>1[0-9]{3}|20[0-9]{2})\b",
    re.S,
)
_EN_WHEN = re.compile(
    rf"^(?P<subj>{_EN_TERM})\s(?P<aux>was|were)\s(?P<part>released|introduced|founded|established|"
    r"published|created|developed|designed|written|built|opened|discovered|invented|launched|adopted|added|born)"
    r"\s(?:[\w,]+\s){0,3}?in\s(?P<y>1[0-9]{3}|20[0-9]{2})\b",
    re.S,
)
_PL_YEAR = re.compile(r"^W (?:roku )?(?P<y>1[0-9]{3}|20[0-9]{2})(?: r\.)?,? \S.{10,}$", re.S)
_EN_YEAR = re.compile(r"^In (?P<y>1[0-9]{3}|20[0-9]{2}),? \S.{10,}$", re.S)
_PL_COUNT = re.compile(
    rf"^(?P<subj>{_TERM})\s(?P<verb>ma|mają|liczy|liczą|posiada|posiadają|zawiera|zawierają|obejmuje|obejmują)\s"
    r"(?:około |ponad |prawie |blisko )?(?P<n>\d+) (?P<noun>[a-ząćęłńóśźż]{3,})\b",
    re.S,
)
_EN_COUNT = re.compile(
    rf"^(?P<subj>{_EN_TERM})\s(?P<verb>has|have|contains|contain|includes|include)\s"
    r"(?:about |over |around |nearly |more than |exactly )?(?P<n>\d[\d,]*) (?P<noun>[a-z]{3,})\b",
    re.S,
)
_BORN = re.compile(r"\bur\. [^,;]*?(?P<y>1[0-9]{3}|20[0-9]{2})")

# words that cannot start (or appear in) a term/subject: pronouns, adverbs, prepositions, ...
_BAD_FIRST = frozenset(
    """
    this it that there these those here what which each every one some all such our we you he she they
    his her its another other both most many if when while to in on at for with by from as after before
    however also then thus so but and or not no yes see note example following now today there
    ten ta to te tu tam tutaj jednak wtedy dzięki który która które co jak nie on ona ono oni one każdy
    każda każde ich jego jej tym tego oto następnie obecnie teraz poniżej powyżej dodatkowo również także
    natomiast ponadto ważne pierwszy drugi inny inne wszystkie wiele niektóre w we z ze na do po od przy
    dla za przez o u pod nad według podczas oprócz gdy jeśli jeżeli aby żeby ale lub oraz i a czy tak
    potem wówczas zwykle często czasem zawsze nigdy tylko nawet już jeszcze mój moja moje twój twoja
    nasz nasza wasz ta ten taki taka takie sam sama samo pan pani jest są był była było były ma mają
    można należy warto nam nas mu jemu mi mnie ci wam im go niniejszy niniejsza niniejsze ów owa tamten
    poniższy poniższa powyższy powyższa następujący następująca kolejny kolejna ostatni ostatnia
    wybierz kliknij naciśnij otwórz zaznacz przejdź wpisz użyj zobacz uwaga wskazówka przykład
    though although because since unless whereas instead therefore hence finally first second third last
    next previous same above below usually typically currently normally only just even still
    pierwszy pierwsza pierwsze drugie trzecie czwarte najbardziej najczęściej będzie może mogą
    kolejne kolejnych następne następny następna poprzednie poprzedni powyższe poniższe tamte
    """.split()
)
_BAD_INNER = frozenset(
    """
    i oraz się nie że który która które jednak też także już w na z do o dla przez po od za
    and or not that which we you it is are was were be following currently normally usually only also
    jest są to
    """.split()
)
# a term word ending like a Polish verb form (past tense, present -uje/-ują) is not a noun phrase
_PL_VERBISH = re.compile(r"(?:ł|ła|ło|li|ły|uje|ują|iają|ować|ać|ić|eć|yć)$")
# after the copula "to", a verb ("Podejście to umożliwia ...") means "to" is a pronoun
_PL_AFTER_TO_BAD = re.compile(r"(?:ł|ła|ło|li|ły|uje|ują|ia|iają|ja|je|ją|ać|ić|eć|yć)$")
_PREPS = frozenset(
    "w we z ze na do o od po za przez dla przy u pod nad zawsze zazwyczaj często też także również jest nie tylko już "
    "właśnie samo sama sam powinno powinien powinna powinny może mogą można będzie było był była ma mają się".split()
)
# a capitalised 3rd-person verb opening a help-page line ("Określa kąt – ...") is not a term
_PL_VERB_3RD = re.compile(r"^[A-ZĄĆĘŁŃÓŚŹŻ]\w*(?:[^c]ja|la|ia|ca|uje|ują)$")
_NOT_COUNTED = frozenset("million billion thousand hundred percent times tys mln mld proc razy".split())
UGLY = re.compile(r"[<>{}\[\]=*_`|$\\@]|https?:|www\.|\.\w{2,4}/")
_TECH = re.compile(r"^[A-Za-z0-9.+#-]+(?: [A-Za-z0-9.+#-]+){0,2}$")
_INSTR_END = re.compile(r"(?:em|ym|im|ą|ami|iem)$")  # Polish instrumental: "jest językiem", "jest biblioteką"

QUESTIONS = {
    "def_pl": ["Czym jest {t}?", "Co to jest {t}?", "Wyjaśnij, czym jest {t}."],
    "def_pl_plural": ["Czym są {t}?", "Co to są {t}?"],
    "term_pl": ["Co oznacza termin „{t}”?", "Co to znaczy „{t}”?", "Wyjaśnij termin „{t}”."],
    "def_en": ["What is {t}?", "What is {t}?", "Explain what {t} is.", "Define {t}."],
    "def_en_plural": ["What are {t}?", "Explain what {t} are."],
    "topic_pl": ["Co mówią moje notatki na temat „{t}”?", "Co mam w notatkach o „{t}”?", "Co wiem z notatek o „{t}”?"],
    "topic_en": ["What do my notes say about {t}?", "What's in my notes about {t}?", "Summarize my notes on {t}."],
    "follow_pl": ["A {t}?", "A czym jest {t}?", "A co to jest {t}?"],
    "follow_en": ["And {t}?", "What about {t}?", "And what is {t}?"],
    "year_pl": ["Co wydarzyło się w {y} roku według notatek o „{t}”?"],
    "year_en": ["What happened in {y} according to my notes on {t}?"],
}
_EN_BASE = {
    "includes": "include",
    "contains": "contain",
    "consists of": "consist of",
    "supports": "support",
    "provides": "provide",
    "offers": "offer",
    "has": "have",
}


def _clean_term(term: str, lower_words: Counter) -> str | None:
    term = term.strip().rstrip(",.:;")
    words = term.split()
    if not words or len(words) > 4 or len(term) > 40 or UGLY.search(term):
        return None
    head = words[1:] if words[0] in {"The", "A", "An"} and len(words) > 1 else words  # English article
    if head[0].lower() in _BAD_FIRST or any(w.lower() in _BAD_INNER for w in head[1:]):
        return None
    if any(w.endswith("ly") and len(w) > 4 for w in words):  # English adverbs: "Currently HTTP ..."
        return None
    if words[0] == "The" and len(words) == 2 and words[1].islower():  # "the answer", "the format": context-bound
        return None
    if sum(ch.isalpha() for ch in term) < 2:
        return None
    first = words[0]
    # a capitalised common noun at sentence start ("Klasa to ...") is lower-cased if the document
    # writes it in lower case at least as often; names (Python, Django) stay as they are
    if first[:1].isupper() and first[1:].islower() and lower_words[first.lower()] >= max(1, lower_words[first]):
        term = first.lower() + term[len(first) :]
    if words[0] in {"The", "A", "An"}:
        term = words[0].lower() + term[len(words[0]) :]
    return term


def _shared(term: str, lower_words: Counter) -> bool:
    """A technical name both languages write the same way: ASCII, at most two words, and marked as a
    name (inner capitals or digits, "NVLink", "Python3", "C++"), or a capitalised word the document
    never writes in lower case ("Python", "Django")."""
    if not _TECH.match(term) or len(term.split()) > 2:
        return False
    w = term.split()[0]
    return (
        any(c.isupper() for c in term[1:])
        or any(c.isdigit() or c in "+#" for c in term)
        or (len(term.split()) == 1 and w[:1].isupper() and lower_words[w.lower()] < lower_words[w])
    )


def _female(name: str) -> bool:
    first = name.split()[0]
    return first.endswith("a") and first not in {"Kuba", "Barnaba", "Bonawentura", "Kosma", "Jarema"}


def _number_ok_pl(n: int) -> bool:
    """True if Polish puts the counted noun in the genitive plural after n (as after 'ile')."""
    return n >= 5 and not (n % 10 in (2, 3, 4) and n % 100 not in (12, 13, 14))


def sentence_items(s: str, lang: str, lower_words: Counter, title: str, entity: bool, rng: random.Random):
    """(kind, question, term, shared) candidates for one sentence; the answer is the sentence.
    `lower_words` counts the document's words (case kept), `title` is the document's, `entity`
    whether it is about a named thing (a Wikipedia article)."""
    if lang == "pl":
        return _pl_items(s, lower_words, title, entity, rng)
    return _en_items(s, lower_words, title, rng)


def _pl_items(s: str, lower_words: Counter, title: str, entity: bool, rng: random.Random) -> list[tuple]:
    out = []
    m = _PL_DASH.match(s)
    if m and (t := _clean_term(m["term"], lower_words)):
        paren = m["paren"] or ""
        if "ur." in paren:
            if " " in t:
                dead = "zm." in paren
                verb = ("była" if _female(t) else "był") if dead else "jest"
                out.append(("def", f"Kim {verb} {t}?", t, False))
                b = _BORN.search(paren)
                if b:
                    out.append(("date", f"Kiedy urodził{'a' if _female(t) else ''} się {t}?", t, False))
        elif m["rest"][:1].islower() and (entity or not _PL_VERB_3RD.match(t.split()[0])):
            # "Wybierz Pomoc – Sprawdź ..." is a menu path, "Określa kąt – ..." a help line
            out.append(("def", rng.choice(QUESTIONS["term_pl"]).format(t=t), t, _shared(t, lower_words)))
    m = _PL_COPULA.match(s)
    if m and (t := _clean_term(m["term"], lower_words)):
        verb, nxt = m["verb"], m["rest"].split()[0].lower()
        plural = verb in ("są", "są to")
        if verb in ("jest", "są") and not (_INSTR_END.search(nxt) or nxt in ("jednym", "jedną", "jednymi")):
            pass  # "X jest używany ..." is not a definition
        elif verb == "to" and (
            nxt in _PREPS or _PL_AFTER_TO_BAD.search(nxt) or (" " not in t and _PL_VERBISH.search(t.lower()))
        ):
            pass  # "Podejście to umożliwia ...", "Wczytuje to dane ...": "to" is a pronoun
        elif _shared(t, lower_words) and not plural:
            out.append(("def", rng.choice(QUESTIONS["def_pl"]).format(t=t), t, True))
        elif plural:
            out.append(("def", rng.choice(QUESTIONS["def_pl_plural"]).format(t=t), t, False))
        else:
            out.append(("def", rng.choice(QUESTIONS["term_pl"] + QUESTIONS["def_pl"][:1]).format(t=t), t, False))
    m = _PL_ENUM.match(s)
    if m and ("," in m["rest"] or " i " in m["rest"]) and (t := _clean_term(m["subj"], lower_words)):
        v = m["verb"]
        q = f"Z czego {v[:-2]} {t}?" if v.endswith(" z") else f"Co {v} {t}?"
        out.append(("list", q, t, False))
    m = _PL_WHEN.match(s)
    if m and (t := _clean_term(m["subj"], lower_words)):
        out.append(("date", f"Kiedy {m['aux']} {m['part']} {t}?", t, False))
    m = _PL_COUNT.match(s)
    if (
        m
        and _number_ok_pl(int(m["n"]))
        and m["noun"] not in _NOT_COUNTED
        and (t := _clean_term(m["subj"], lower_words))
    ):
        out.append(("number", f"Ile {m['noun']} {m['verb']} {t}?", t, False))
    if entity and _PL_YEAR.match(s):
        out.append(("date", QUESTIONS["year_pl"][0].format(y=_PL_YEAR.match(s)["y"], t=title), "", False))
    return out


def _en_items(s: str, lower_words: Counter, title: str, rng: random.Random) -> list[tuple]:
    out = []
    m = _EN_DEF.match(s)
    if m and (t := _clean_term(m["term"], lower_words)):
        plural = m["verb"] == "are"
        out.append(
            (
                "def",
                rng.choice(QUESTIONS["def_en_plural" if plural else "def_en"]).format(t=t),
                t,
                _shared(t, lower_words) and not plural,
            )
        )
    m = _EN_ENUM.match(s)
    if m and "," in m["rest"] and (t := _clean_term(m["subj"], lower_words)):
        v = m["verb"]
        aux = "does" if v in _EN_BASE else "do"
        out.append(("list", f"What {aux} {t} {_EN_BASE.get(v, v)}?", t, False))
    m = _EN_WHEN.match(s)
    if m and (t := _clean_term(m["subj"], lower_words)):
        out.append(("date", f"When {m['aux']} {t} {m['part']}?", t, False))
    m = _EN_COUNT.match(s)
    if (
        m
        and m["n"].replace(",", "") != "1"
        and m["noun"] not in _NOT_COUNTED
        and (t := _clean_term(m["subj"], lower_words))
    ):
        v = m["verb"]
        aux = "does" if v in _EN_BASE else "do"
        out.append(("number", f"How many {m['noun']} {aux} {t} {_EN_BASE.get(v, v)}?", t, False))
    if re.fullmatch(r"[A-Za-z][A-Za-z ]{2,40}", title) and _EN_YEAR.match(s):
        out.append(("date", QUESTIONS["year_en"][0].format(y=_EN_YEAR.match(s)["y"], t=title), "", False))
    return out
