"""The model input: how our GPT reads a question over retrieved passages.

The generator (sft/generator_data.py in training, chat/writer.py in the chat) writes its answer
after this input; the copy head copies from its passage tokens (model/copy_head.py). The input
puts the question first, so every passage token can attend to it (causal attention), and marks
each passage word that matches a question word::

    <|bos|><|user|>{earlier question}<|end|> … <|user|>{question}<|end|>
    <|passage|>[1] {label}\\n{sentence}{sentence}…<|end|> … <|assistant|>

Each passage is encoded one sentence (or slide line) at a time, so sentence boundaries are token
boundaries and every token keeps its character range. Match flags (bits, summed as learned
vectors into the input embedding, gpt.py `match_emb`): exact word, lower-case word, same
5-letter folded prefix (Polish inflection), and a translation of a question word (when the
bilingual dictionaries supply one).

The module is named for the reader, the pointer heads that first read this input (removed
2026-12-01; their old checkpoints still load, gpt.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from notes_rag.model.constants import AFTER_SHIFT, COS_SHIFT, MATCH_MASK, N_REL, RANK_SHIFT
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.text import fold, unit_spans, words

EXACT, LOWER, PREFIX, TRANSLATION = 1, 2, 4, 8
_WORD = re.compile(r"\w+")
# Words too common to mark: a flag on "the" or "w" says nothing about where the answer is.
_STOP = frozenset(
    """
    a an the of to in on at by for from with and or is are was were be been it its this that these those
    what which who whom whose when where why how do does did can could has have had not no yes as into
    i w z na do o od po za ze się jest są to co czy jak jaki jaka jakie kto gdzie kiedy ile który która
    które oraz lub a ale nie tak dla przez przy jego jej ich ten ta te tym tego
    """.split()
)


@dataclass
class QuestionWords:
    """The question's words in the three forms the match flags compare."""

    exact: set[str]
    lower: set[str]
    prefix: set[str]
    translated: set[str] = field(default_factory=set)  # folded 5-letter prefixes of translations

    @classmethod
    def of(cls, question: str, translations: tuple[str, ...] = ()) -> QuestionWords:
        words = [w for w in _WORD.findall(question) if w.lower() not in _STOP]
        lower = {w.lower() for w in words}
        prefix = {fold(w)[:5] for w in words if len(w) >= 4}
        translated = {fold(w)[:5] for t in translations for w in _WORD.findall(t) if len(w) >= 4}
        return cls(set(words), lower, prefix, translated - prefix)

    def flags(self, word: str) -> int:
        bits = 0
        if word in self.exact:
            bits |= EXACT
        low = word.lower()
        if low in self.lower:
            bits |= LOWER
        if len(word) >= 4 and low not in _STOP:
            p = fold(word)[:5]
            if p in self.prefix:
                bits |= PREFIX
            if p in self.translated:
                bits |= TRANSLATION
        return bits


def text_flags(text: str, q: QuestionWords) -> list[tuple[int, int, int]]:
    """(start, end, bits) of every word of `text` that matches the question."""
    return [(m.start(), m.end(), b) for m in _WORD.finditer(text) if (b := q.flags(m.group()))]


@dataclass
class Unit:
    """One sentence (or line) of one passage that can hold an answer (`can_answer`)."""

    passage: int  # 1-based passage number
    start: int  # character range in the passage text
    end: int
    first: int  # token range in the input ids (inclusive)
    last: int


@dataclass
class ReaderInput:
    ids: list[int]
    match: list[int]  # flag bits per token
    units: list[Unit]
    offsets: list[tuple[int, int, int]]  # per token: (passage or 0, char start, char end)
    passages: int  # passages that fit (the first ones)


def _encode_chars(tok: Tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of `text` and each token's character range. Characters are counted as the
    bytes that do not continue a UTF-8 sequence, so a token ending inside a character counts it."""
    ids = tok.encode(text)
    spans, pos = [], 0
    for i in ids:
        n = sum((byte & 0xC0) != 0x80 for byte in tok.token_bytes(i))
        spans.append((pos, pos + n))
        pos += n
    return ids, spans


# Passages the generator reads (chat: the top ones retrieved; training: the gold one and the first
# distractors). On questions about corpus/ kept from the team, the top 3 held a two-line window with
# every key fact for 0.79 of them, the top 1 for 0.67; each passage more costs ~150 prompt tokens
# of training and prefill.
READ_PASSAGES = 3
MIN_UNIT_TOKENS = 32  # a single line is cut down to this many tokens before its passage is dropped
MIN_ANSWER_WORDS = 3  # a shorter line (a slide title, "Zadanie:", a rule of dashes) answers nothing


def can_answer(sentence: str, headings: set[str]) -> bool:
    """Can this sentence hold an answer (be a `Unit`)? Not a heading (a markdown `#` line, or
    the text of one of the passage's headings: slides repeat their title as a line) and not a
    fragment of fewer than MIN_ANSWER_WORDS words. Such lines stay in the input as context."""
    text = sentence.strip()
    if text.startswith("#") or len(words(text)) < MIN_ANSWER_WORDS:
        return False
    return fold(text).strip(" :.") not in headings


def label_headings(label: str) -> set[str]:
    """The folded headings of a passage label `file › heading › subheading`."""
    return {fold(h).strip(" :.") for h in label.split(" › ")[1:]}


# Cosine bin edges of the relevance codes (bins 1-7): the 1/7 ... 6/7 quantiles of the unit-to-
# question cosines (aligned e5) of the units read for the 1,361 questions of notes_qa's train
# notes (sft/notes_qa.py items, 2026-12-06); no test or val note, no dev item was used.
COS_EDGES = (0.830, 0.843, 0.853, 0.862, 0.873, 0.888)


# Which of the codes a model reads, for ablations (train-generator --codes, the notes_qa benchmark):
# the bits of the match int kept.
CODE_SETS = {"all": -1, "relevance": (1 << AFTER_SHIFT) - 1, "none": MATCH_MASK}


def relevance_codes(cosines: list[list[float]]) -> list[list[int]]:
    """Per passage, per unit (`text.unit_spans` of its text): the code packed above the match
    flags (model/constants.py): the unit's rank among all the units given by cosine to the
    question (1-5, 6 for 6th-10th, 7 below), its cosine bin (1-7 by COS_EDGES), and where it
    stands after the passage's top-ranked units (1-4, `AFTER_SHIFT`)."""
    flat = [(c, p, u) for p, cs in enumerate(cosines) for u, c in enumerate(cs)]
    order = sorted(range(len(flat)), key=lambda i: -flat[i][0])
    ranks = [[0] * len(cs) for cs in cosines]
    for r, i in enumerate(order, 1):
        _, p, u = flat[i]
        ranks[p][u] = r
    out = []
    for cs, rs in zip(cosines, ranks):
        codes = []
        for u, (c, r) in enumerate(zip(cs, rs)):
            rank = r if r <= 5 else 6 if r <= 10 else 7
            cos_bin = 1 + sum(c >= e for e in COS_EDGES)
            codes.append((rank % N_REL) << RANK_SHIFT | (cos_bin % N_REL) << COS_SHIFT | _after(rs, u) << AFTER_SHIFT)
        out.append(codes)
    return out


def _after(ranks: list[int], u: int) -> int:
    """Unit u's place after its passage's top units: 1/2 = first/second after the rank-1 unit,
    3/4 = first/second after a rank-2 or rank-3 unit, 0 otherwise (the nearer one wins)."""
    for back, (top1, top3) in ((1, (1, 3)), (2, (2, 4))):
        if u - back >= 0:
            r = ranks[u - back]
            if r == 1:
                return top1
            if r in (2, 3):
                return top3
    return 0


def encode(
    tok: Tokenizer,
    question: str,
    passages: list[tuple[str, str]],
    history: tuple[str, ...] = (),
    translations: tuple[str, ...] = (),
    max_len: int = 1024,
    system: str | None = None,
    relevance: list[list[float]] | None = None,
) -> ReaderInput:
    """The reader input for a question over (label, text) passages, fitted into `max_len`:
    the longest passages lose their last sentences first (down to one each), then the
    lowest-ranked passages are dropped; passage numbers stay those of `passages`. Only
    sentences that `can_answer` become units. With `system`, the input opens with that system
    prompt (chat/format.py; the generator is trained with it). `relevance`: per passage, the
    retrieval encoder's cosine of each unit (`text.unit_spans`) to the question; its codes
    (`relevance_codes`) are added to the unit's tokens' match ints."""
    q = QuestionWords.of(question, translations)
    codes = relevance_codes(relevance) if relevance is not None else [[0] * len(unit_spans(t)) for _, t in passages]
    end = tok.special("end")
    head = [tok.special("bos")]
    if system:  # the generator's input opens with the chat's system prompt (chat/format.py)
        head += [tok.special("system"), *tok.encode(system), end]
    for h in history:
        head += [tok.special("user"), *tok.encode(h), end]
    head += [tok.special("user"), *tok.encode(question), end]
    blocks = []  # per passage: label ids/flags, then per unit (ids, char spans, (start, end))
    for label, text in passages:
        label_text = f"[{len(blocks) + 1}] {label}\n".replace("\n", " ").rstrip() + "\n"
        lids, lspans = _encode_chars(tok, label_text)
        units = []
        for a, b in unit_spans(text):
            ids, spans = _encode_chars(tok, text[a:b])
            units.append((ids, [(a + s, a + e) for s, e in spans], (a, b)))
        blocks.append(((lids, _token_bits(lspans, text_flags(label_text, q))), units, text, label_headings(label)))
    budget = max_len - len(head) - 1  # the closing <|assistant|>
    sizes = [[len(u[0]) for u in b[1]] for b in blocks]

    def total() -> int:
        return sum(2 + len(b[0][0]) + sum(s) for b, s in zip(blocks, sizes))

    while total() > budget:
        cut = [i for i, s in enumerate(sizes) if len(s) > 1]
        long = [i for i, s in enumerate(sizes) if len(s) == 1 and s[0] > MIN_UNIT_TOKENS]
        if cut:  # the longest passage loses its last sentence
            sizes[max(cut, key=lambda i: (sum(sizes[i]), i))].pop()
        elif long:  # a passage of one long line (a slide export, a paragraph without stops) is cut
            i = max(long, key=lambda i: (sizes[i][0], i))
            sizes[i][0] = max(MIN_UNIT_TOKENS, sizes[i][0] - (total() - budget))
        else:  # every passage is down to one short sentence: the lowest-ranked goes
            blocks.pop()
            sizes.pop()
        if not blocks:
            raise ValueError("the question leaves no room for any passage")
    ids, match = list(head), [0] * len(head)
    offsets: list[tuple[int, int, int]] = [(0, 0, 0)] * len(head)
    units_out: list[Unit] = []
    for n, ((label, units, text, headings), keep) in enumerate(zip(blocks, sizes), 1):
        (lids, lbits) = label
        ids += [tok.special("passage"), *lids]
        match += [0, *lbits]
        offsets += [(0, 0, 0)] * (1 + len(lids))
        flags = text_flags(text, q)
        for (uids, uspans, (a, b)), size, code in zip(units, keep, codes[n - 1]):
            if size < len(uids):  # a cut line ends at its last kept token
                uids, uspans = uids[:size], uspans[:size]
                b = uspans[-1][1]
            first = len(ids)
            ids += uids
            match += [bits | code for bits in _token_bits(uspans, flags)]
            offsets += [(n, s, e) for s, e in uspans]
            if can_answer(text[a:b], headings):
                units_out.append(Unit(n, a, b, first, len(ids) - 1))
        ids.append(end)
        match.append(0)
        offsets.append((0, 0, 0))
    ids.append(tok.special("assistant"))
    match.append(0)
    offsets.append((0, 0, 0))
    return ReaderInput(ids, match, units_out, offsets, len(blocks))


def copy_sources(ids: list[int], specials: set[int]) -> list[bool]:
    """Which input positions an answer may copy from: every token that is not a special token
    (the question's, the passages' and their labels' text), in training and in the chat alike."""
    return [i not in specials for i in ids]


def _token_bits(spans: list[tuple[int, int]], flags: list[tuple[int, int, int]]) -> list[int]:
    """Each token gets the bits of every flagged word its character range overlaps."""
    out, j = [], 0
    for s, e in spans:
        while j < len(flags) and flags[j][1] <= s:
            j += 1
        bits, k = 0, j
        while k < len(flags) and flags[k][0] < max(e, s + 1):
            bits |= flags[k][2]
            k += 1
        out.append(bits)
    return out
