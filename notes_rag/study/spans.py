"""Which parts of a note to ask about: answer spans chosen from a passage's lines.

A span is a piece of one note line that a student should be able to recall, with the kind of
fact it is:

- `definition`: "X is/are/means Y", "X jest/są/to/oznacza Y", "X – Y", "**X**: Y" lines; the
  answer is Y (its first clause), the term X is what the question names;
- `list`: a line introducing items ("X: a, b, c", "X include a, b and c") or an intro line ending
  with ":" followed by bullet lines; the answer is the items;
- `number`: a year, a count or an amount with its unit ("1943", "128k tokens", "175 mld");
- `name`: a person's or a thing's proper name of two or more capitalised words, or an acronym.

Never asked about: headings (markdown `#` lines and lines repeating a heading of the passage),
fragments (lines of fewer than `MIN_LINE_WORDS` words), code blocks, table rows and ASCII art.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from notes_rag.text import fold, sentence_spans, words

MIN_LINE_WORDS = 5  # a shorter line is a title or a fragment, not a fact
MAX_LINE_WORDS = 45  # a longer "line" is a flattened table or slide, not one fact
MAX_TERM_WORDS = 4  # "X" of a definition: a term, not a clause
MAX_ANSWER_WORDS = 18  # a definition's answer is cut at its first clause past this
MIN_ANSWER_WORDS = 2

_BULLET = re.compile(r"^\s*(?:[-*•+]|\d+[.)])\s+")
_MARKUP = re.compile(r"\*\*|__|`|\[(\d+)\]|<[^>]+>")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"https?://\S+|\[![A-Z]+\]")  # URLs and callout marks ("> [!NOTE]")
# A definition's "X" must name a thing: not a pronoun, a label ("Example:") or a clause opener.
_NOT_TERMS = frozenset(
    """
    it its their his her our my your this that these those they there we you he she i one which what who here
    also then thus so todo fixme
    jest example examples note problem question answer result solution tip warning step first next
    to ten ta te ono one on ona oni my wy jej jego ich tu tam też także przykład przykłady uwaga
    problem pytanie odpowiedź wynik rozwiązanie krok dlatego więc czyli natomiast jednak następnie potem
    wtedy nasz nasza nasze mój moja moje twój swój swoja często zwykle zazwyczaj jakie jaki jaka choć
    chociaż ponieważ gdyż obecnie dziś dzisiaj również zawsze nigdy tutaj całość skorzystaj zobacz
    """.split()
)
_COPULA_ANY = re.compile(r"\b(?:is|are|was|were|jest|są|był|była|było)\b", re.IGNORECASE)
_OPENERS = frozenset(
    "in on at for with by from as after before when if while during to so w na do po przed przy dla z ze jako gdy"
    " jeśli podczas aby żeby by że".split()
)
# Polish past-tense and infinitive endings: "Podejście to pozwoliło ..." has a demonstrative
# "to", not the copula, when a verb follows it.
_PL_VERB_END = ("ło", "ła", "ły", "li", "ił", "ał", "ć")
# Polish present-tense verb endings of a one-word "term" ("wymaga", "odbywa", "pozwala", "używa");
# a few nouns end so too ("waga", "skala"): a card less, never a wrong one.
_PL_PRESENT_END = ("aga", "ega", "ywa", "iwa", "ala", "uje", "ają", "ada")
# Polish imperatives and present / first-person-plural verbs (oceniaj, zacznij, zadaje, używamy)
_PL_CLAUSE_END = ("aj", "ij", "uj", "aje", "uje", "eje", "amy", "emy", "imy", "ymy")
# "Wynikiem tego jest ...": a first word in the instrumental is the predicate, the order inverted
_PL_INSTRUMENTAL_END = ("ą", "iem", "ami", "ymi", "imi")
# Polish passive participles: "wektor przepuszczany jest przez ..." is no definition of a term.
_PL_PARTICIPLE_END = ("any", "ony", "ana", "ona", "ane", "one", "ęty", "ęta", "ęte")
_PL_ADJ_END = ("ny", "na", "ne", "ni", "wy", "wa", "we", "ki", "ka", "kie", "ły", "ła", "łe", "ży", "ża", "że")
_EN_ADJ_END = ("ed", "ly", "able", "ible", "ive", "ous", "al", "ful", "ing")
_EN_NOT_NOUNS = frozenset("not also very quite more less often usually able used only still just so too".split())
_NOT_ANSWERS = frozenset("todo fixme tbd note tip warning uwaga".split())
_COPULA = {
    "en": r"is|are|was|were|means|refers to|denotes|stands for",
    "pl": r"jest|są|to|oznacza|oznaczają|nazywamy|polega na",
}
_DASH_DEF = re.compile(r"^(?P<term>[^.:;–—=]{2,60}?)\s+[–—-]\s+(?P<ans>.{6,})$")
_COLON_DEF = re.compile(r"^(?P<term>[^.:;–—=,]{2,60}?):\s+(?P<ans>.{6,})$")
_NUMBER = re.compile(
    r"(?<![\w.-])(?:\d{1,3}(?:[ ,.]\d{3})+|\d+(?:[.,]\d+)?)(?:\s?(?:%|k|M|B|mld|mln|tys\.?|"
    r"tokens?|tokenów|parametrów|parameters|billion|million|thousand|roku|r\.|lat|years?|GB|MB|ms|s|h|dni|days))?"
    r"(?![\w])"
)
_NAME = re.compile(r"\b(?:[A-ZŁŚŻŹĆ][a-ząćęłńóśźż]+(?:[ -](?:[A-ZŁŚŻŹĆ][a-ząćęłńóśźż]+|[A-Z]\.)){1,5})\b")
_ACRONYM = re.compile(r"\b[A-Z][A-Za-z]*[A-Z][A-Za-z0-9-]*\b")
# Only explicit list openers: "X are a, b, c" / "X to a, b, c" read as lists too often when they are not.
_LIST_INTRO = {"en": r"include|includes|such as|consists of", "pl": r"obejmuje|obejmują|należą|m\.in\."}
# A clause ends a definition's answer: a sentence end, a dash, a bracket, or a relative clause
# ("tabela odwzorowań, która ..."): the head noun phrase is what is recalled, the rest detail.
_CLAUSE_END = re.compile(r"[.;!?](?:\s|$)|\s[–—]\s|\(|,\s+(?:który|która|które|których|that|which|who)\b")


@dataclass(frozen=True)
class Span:
    kind: str  # definition | list | number | name
    answer: str  # what the student recalls
    term: str  # what the question names (the defined term, the list's intro); "" for cloze-only kinds
    line: str  # the note line (or sentence) the answer stands in, markup removed (bullets: the intro line)
    offset: int  # index of that line among the passage's lines


def clean(line: str) -> str:
    """A note line as prose: bullet marks, links (their text kept), URLs, bold/code markup and
    citation numbers dropped."""
    text = _URL.sub("", _LINK.sub(r"\1", _BULLET.sub("", line))).replace("> ", " ")
    return " ".join(_MARKUP.sub("", text).replace("*", "").replace("_", " ").split())


def _headings(heading_path: tuple[str, ...]) -> set[str]:
    return {fold(h).strip(" :.") for h in heading_path}


def askable(line: str, headings: set[str]) -> bool:
    """A line that states a fact: not a heading, a fragment, a table row or ASCII art."""
    raw = line.strip()
    if not raw or raw.startswith(("#", "|", "```", ">", "+-", "!")) or raw.count("|") >= 2:
        return False
    if "<" in raw or "$$" in raw or "\\" in raw or "](" in raw:  # HTML, LaTeX, a cut link: not a line in words
        return False
    text = clean(raw)
    if not MIN_LINE_WORDS <= len(words(text)) <= MAX_LINE_WORDS or fold(text).strip(" :.") in headings:
        return False
    letters = sum(ch.isalpha() for ch in text)
    return letters >= 0.6 * len(text.replace(" ", ""))


def _first_clause(text: str) -> str:
    """`text` up to its first sentence or clause end once it has MIN_ANSWER_WORDS words."""
    for m in _CLAUSE_END.finditer(text):
        if len(words(text[: m.start()])) >= MIN_ANSWER_WORDS:
            text = text[: m.start()]
            break
    ws = text.split()
    return " ".join(ws[:MAX_ANSWER_WORDS]).strip(" ,:;")


def _term_ok(term: str) -> bool:
    """A defined term or a list's intro: a short noun phrase, not a pronoun, label or clause."""
    ws = term.split()
    if not 1 <= len(words(term)) <= MAX_TERM_WORDS or not any(ch.isalpha() for ch in term):
        return False
    first, last = ws[0].lower().strip("(\"'"), ws[-1].lower()
    if last in ("jest", "są", "is", "are") or (len(ws) == 1 and first.endswith(_PL_VERB_END[:3])):
        return False
    # "Odbywa się to ...", "Wymaga to ...": a Polish verb before a demonstrative "to"; "Oceniaj
    # punkty kontrolne:", "Uczeń zadaje pytanie:", "wykorzystamy zasady": a clause, not a term
    if "się" in (w.lower() for w in ws) or (len(ws) == 1 and first.endswith(_PL_PRESENT_END)):
        return False
    if any(w.lower().endswith(_PL_CLAUSE_END) for w in ws) or first.endswith(_PL_INSTRUMENTAL_END):
        return False
    # "Pierwszą warstwą ... jest X": a term in the instrumental is the predicate, the order inverted
    if last.endswith(_PL_PARTICIPLE_END) or first.endswith("ą") or any(ch.isdigit() for ch in term):
        return False
    return first not in _NOT_TERMS and first not in _OPENERS and not re.search(r"[,?!()\"]", term)


def _predicate_ok(head: str, copula: str, lang: str) -> bool:
    """Whether the answer's first word starts a definition, not a description: "jest
    architekturą", "is a structure", not "jest dostępna", "są stałe", "are used"."""
    if lang == "pl":
        if head.endswith(_PL_VERB_END) or head in ("do", "że", "się", "jest", "nie", "też", "także"):
            return False
        return copula not in ("jest", "są") or not head.endswith(_PL_ADJ_END)
    if copula in ("is", "was"):
        return head in ("a", "an", "the", "one")
    if copula in ("are", "were"):
        return not head.endswith(_EN_ADJ_END) and head not in _EN_NOT_NOUNS
    return True


def definition(text: str, lang: str) -> tuple[str, str] | None:
    """(term, answer) of a definition line, else None."""
    m = re.match(rf"^(?P<term>[^.:;?!]{{2,60}}?)\s+(?P<cop>{_COPULA[lang]})\s+(?P<ans>.{{6,}})$", text)
    labelled = [c for c in (_DASH_DEF.match(text), _COLON_DEF.match(text)) if c and _label_term(c["term"])]
    for cand in [m, *labelled]:
        if not cand or not _term_ok(cand["term"].strip(" -–—")):
            continue
        if cand["term"].split()[0].lower() in _VALUE_TERMS:
            continue
        answer = _first_clause(cand["ans"])
        if cand is not m:  # "GPT – Generative pre-trained transformer, tylko dekoder": the name, not the notes after it
            answer = answer.split(",")[0].strip()
        head = (answer.split() or [""])[0].lower().strip(".,;:")
        if answer.rstrip().endswith("?") or head in ("how", "what", "why", "jak", "co", "dlaczego"):
            continue
        # "Zakres działania: Dzięki multi-head, ...", "Odbywa się to przez ...": an explanation or
        # a verb phrase, not what the term is
        if head in _OPENERS or head in _NOT_TERMS or head in ("dzięki", "twój", "your", "you", "we", "my", "zarówno"):
            continue
        if cand is not m and lang == "en" and (head.endswith(_EN_ADJ_END) or head in _EN_NOT_NOUNS | {"good", "bad"}):
            continue  # "Starting question: good because ...": a remark, not what the term is
        if cand is not m and lang == "pl" and head.endswith(_PL_PRESENT_END + ("a",)) and len(head) > 5:
            continue  # "Bogactwo informacji: zapewnia, że ...": an explanation opening with a verb
        if cand is m and not _predicate_ok(head, m["cop"].lower(), lang):
            continue
        if len(words(answer)) >= MIN_ANSWER_WORDS:
            return cand["term"].strip(" -–—"), answer
    return None


# "Liczba parametrów jest rzędu ...": a quantity's value, not what a term is
_VALUE_TERMS = ("liczba", "rozmiar", "wielkość", "wartość", "długość", "number", "size", "value", "length", "amount")


def _label_term(term: str) -> bool:
    """A "X – Y" / "X: Y" term: a name or acronym, or two or more words ("Results:" is a label)."""
    term = term.strip(" -–—")
    return len(term.split()) >= 2 or any(ch.isupper() for ch in term[1:])


def _inline_list(text: str, lang: str) -> tuple[str, str] | None:
    """(intro, items) of "X: a, b, c" / "X include a, b and c" lines with three or more items."""
    m = re.match(rf"^(?P<intro>[^:]{{3,80}}?)(?::|\s+(?:{_LIST_INTRO[lang]}))\s+(?P<items>.+)$", text)
    if not m:
        return None
    items = [i.strip(" .") for i in re.split(r",\s*|\s+(?:and|oraz|i|or|lub)\s+", m["items"]) if i.strip(" .")]
    if len(items) < 3 or any(len(words(i)) > 4 for i in items) or not _term_ok(m["intro"]):
        return None
    if re.search(rf"\b(?:{_COPULA[lang]})\b", m["intro"]):  # "language is relative: ..." is a clause
        return None
    if m["intro"].split()[0].lower() in _VALUE_TERMS:  # "Liczba tokenów: 11 (Ada, has, ...)"
        return None
    return m["intro"].strip(), ", ".join(items)


_EXAMPLE = re.compile(r"\b(?:np\.|e\.g\.|przykład\w*|example|for instance|na przykład)", re.IGNORECASE)
# "such as GPT-4", "takich jak BERT": the name is one example of several, any of them fits a blank
_SUCH_AS = re.compile(r"\b(?:such as|like|including|takie jak|takich jak|m\.in\.)\s", re.IGNORECASE)
_ENUMERATION = re.compile(r"\((?:[^,()]+,){2,}")  # "(Ada, has, a, cat, ...)": an example spelled out
_NUMBER_RUN = re.compile(r"\d[\d.,]*\s*,\s*\d")  # "3014, 7020, 2324": ids in a row, not a fact


def _terms(text: str) -> list[tuple[str, str]]:
    """(kind, text) of the numbers, names and acronyms in a line, in order, without overlaps.
    Numbers of a line giving an example ("np.", "e.g.") or a run of numbers are arbitrary, not
    facts to recall, and are left out."""
    numbers_ok = not any(r.search(text) for r in (_EXAMPLE, _SUCH_AS, _NUMBER_RUN, _ENUMERATION))
    found = [("number", m) for m in _NUMBER.finditer(text)] if numbers_ok else []
    if not numbers_ok:
        return []  # names given as examples are left out too
    # a sentence's first word is capitalised anyway: a name starting there is no evidence
    found += [("name", m) for m in _NAME.finditer(text) if m.start() > 0]
    found += [("name", m) for m in _ACRONYM.finditer(text) if len(m.group()) >= 3]
    out, taken = [], []
    for kind, m in sorted(found, key=lambda km: (km[1].start(), -len(km[1].group()))):
        if any(m.start() < b and a < m.end() for a, b in taken) or fold(m.group()) in _NOT_ANSWERS:
            continue
        if kind == "number" and len(m.group().strip()) < 2:  # "4": a count in passing, not a fact
            continue
        taken.append((m.start(), m.end()))
        out.append((kind, m.group().strip()))
    return out


def units(text: str) -> list[tuple[int, str, str]]:
    """(line offset, raw line, sentence) of the passage's prose sentences and bullet lines:
    hard-wrapped paragraph lines are joined before splitting into sentences, so a sentence
    broken over two lines is one unit; code blocks, headings, tables and blank lines end a
    paragraph and are no units."""
    lines = text.splitlines()
    out: list[tuple[int, str, str]] = []
    para: list[tuple[int, str]] = []

    def flush() -> None:
        if not para:
            return
        joined, starts = "", []
        for i, line in para:
            starts.append((len(joined), i))
            joined += line.strip() + " "
        for a, b in sentence_spans(joined):
            line_no = max(i for pos, i in starts if pos <= a)
            out.append((line_no, lines[line_no], joined[a:b]))
        para.clear()

    in_code = False
    for i, raw in enumerate(lines):
        stripped = raw.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            flush()
            continue
        if in_code or not stripped or stripped.startswith(("#", "|")) or _BULLET.match(raw):
            flush()
            if not in_code and _BULLET.match(raw):
                body = _BULLET.sub("", raw)
                out += [(i, raw, body[a:b]) for a, b in sentence_spans(body)]
            continue
        para.append((i, raw))
    flush()
    return out


def _bullets_after(lines: list[str], i: int) -> tuple[str, str] | None:
    """(intro, items) when line i ends with ':' and 2-7 bullet lines of short items follow."""
    intro = clean(lines[i]).rstrip(":").strip()
    if not lines[i].rstrip().endswith(":") or not _term_ok(intro) or _COPULA_ANY.search(intro):
        return None  # "language is fundamentally relative:" is a clause, not the name of a list
    items = []
    for line in lines[i + 1 :]:
        if not _BULLET.match(line):
            break
        item = clean(line).strip(" .")
        if len(words(item)) > 5 or not item:
            return None
        items.append(item)
    return (intro, ", ".join(items)) if 2 <= len(items) <= 7 else None


def passage_spans(text: str, heading_path: tuple[str, ...], lang: str) -> list[Span]:
    """The answer spans of one passage, in line order: per sentence at most one definition or
    list and one number or name (the first), so one line does not fill a quiz."""
    lang = lang if lang in _COPULA else "en"
    lines = text.splitlines()
    heads = _headings(heading_path)
    out: list[Span] = []
    for i, raw in enumerate(lines):  # intro lines with bullet items under them
        listed = _bullets_after(lines, i) if raw.rstrip().endswith(":") and not raw.lstrip().startswith("#") else None
        if listed:
            # the card's line is the intro line: the one line that must stay for the card to stay
            out.append(Span("list", listed[1], listed[0], clean(raw), i))
    for i, _raw, sentence in units(text):
        line = clean(sentence)
        if not askable(line, heads) or line[:1].islower():  # lower-case start: the tail of a cut sentence
            continue
        found = definition(line, lang)
        listed = _inline_list(line, lang)
        if listed:
            out.append(Span("list", listed[1], listed[0], line, i))
        elif found:
            out.append(Span("definition", found[1], found[0], line, i))
        named = fold(found[0] if found else "")
        terms = [(k, t) for k, t in _terms(line) if fold(t) not in named and fold(t) not in heads]
        if terms:  # a number is the more concrete fact when a line has both
            kind, term = min(terms, key=lambda kt: kt[0] != "number")
            out.append(Span(kind, term, "", line, i))
    return sorted(out, key=lambda s: s.offset)
