"""The reader: our GPT reads retrieved passages and points at the answer instead of generating it.

A 3M-parameter GPT trained on two CPU cores does not learn to copy facts by generation (copying
needs induction heads, which form far later than our token budget), but it learns to *point*.
The reader input puts the question first, so every passage token can attend to it (causal
attention), and marks each passage word that matches a question word::

    <|bos|><|user|>{earlier question}<|end|> … <|user|>{question}<|end|>
    <|passage|>[1] {label}\\n{sentence}{sentence}…<|end|> … <|assistant|>

Each passage is encoded one sentence (or slide line) at a time, so sentence boundaries are token
boundaries. Match flags (bits, summed as learned vectors into the input embedding, gpt.py):
exact word, lower-case word, same 5-letter folded prefix (Polish inflection), and a translation
of a question word (when the bilingual dictionaries supply one).

Heads on the last hidden states (gpt.py `read_tok`, `read_pool`, `read_cls`):
- sentence pointer: a score at the last token of every sentence plus per-token evidence summed
  over the sentence, against a no-answer score at the final `<|assistant|>` token (which has
  seen every passage); one softmax over [no-answer, sentences] — the chosen sentence is the
  citation;
- span pointer: start/end scores per token, searched inside the chosen sentence;
- answer kind at the final token: span, yes, no.
The language-model head keeps training on a sample of the input tokens (auxiliary loss).

This module owns the input encoding, the heads' loss and the inference (`read`). Turning a
reading into the user's reply is chat/reply.py; training data is sft/reader_data.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from notes_rag.model.checkpoint import unwrap
from notes_rag.model.gpt import GPT
from notes_rag.model.kernels import linear_cross_entropy
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.text import fold, sentence_spans, stems, words

EXACT, LOWER, PREFIX, TRANSLATION = 1, 2, 4, 8
KINDS = ("span", "yes", "no")
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
    """One sentence (or line) of one passage: the thing the sentence pointer chooses."""

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


def sentence_units(text: str) -> list[tuple[int, int]]:
    """Contiguous character ranges covering `text`, one per sentence or line: each range starts
    at the end of the previous one, so its leading whitespace belongs to it."""
    out: list[tuple[int, int]] = []
    for _, end in sentence_spans(text):
        out.append((out[-1][1] if out else 0, end))
    if out:
        out[-1] = (out[-1][0], len(text))
    return out


MIN_ANSWER_WORDS = 3  # a shorter line (a slide title, "Zadanie:", a rule of dashes) answers nothing


def can_answer(sentence: str, headings: set[str]) -> bool:
    """May the pointer choose this sentence? Not a heading (a markdown `#` line, or the text of
    one of the passage's headings: slides repeat their title as a line) and not a fragment of
    fewer than MIN_ANSWER_WORDS words. Such lines stay in the input as context."""
    text = sentence.strip()
    if text.startswith("#") or len(words(text)) < MIN_ANSWER_WORDS:
        return False
    return fold(text).strip(" :.") not in headings


def label_headings(label: str) -> set[str]:
    """The folded headings of a passage label `file › heading › subheading`."""
    return {fold(h).strip(" :.") for h in label.split(" › ")[1:]}


def encode(
    tok: Tokenizer,
    question: str,
    passages: list[tuple[str, str]],
    history: tuple[str, ...] = (),
    translations: tuple[str, ...] = (),
    max_len: int = 1024,
) -> ReaderInput:
    """The reader input for a question over (label, text) passages, fitted into `max_len`:
    the longest passages lose their last sentences first (down to one each), then the
    lowest-ranked passages are dropped; passage numbers stay those of `passages`. Only
    sentences that `can_answer` become units the pointer can choose."""
    q = QuestionWords.of(question, translations)
    end = tok.special("end")
    head = [tok.special("bos")]
    for h in history:
        head += [tok.special("user"), *tok.encode(h), end]
    head += [tok.special("user"), *tok.encode(question), end]
    blocks = []  # per passage: label ids/flags, then per unit (ids, char spans, (start, end))
    for label, text in passages:
        label_text = f"[{len(blocks) + 1}] {label}\n".replace("\n", " ").rstrip() + "\n"
        lids, lspans = _encode_chars(tok, label_text)
        units = []
        for a, b in sentence_units(text):
            ids, spans = _encode_chars(tok, text[a:b])
            units.append((ids, [(a + s, a + e) for s, e in spans], (a, b)))
        blocks.append(((lids, _token_bits(lspans, text_flags(label_text, q))), units, text, label_headings(label)))
    budget = max_len - len(head) - 1  # the closing <|assistant|>
    sizes = [[len(u[0]) for u in b[1]] for b in blocks]

    def total() -> int:
        return sum(2 + len(b[0][0]) + sum(s) for b, s in zip(blocks, sizes))

    while total() > budget:
        cut = [i for i, s in enumerate(sizes) if len(s) > 1]
        if cut:  # the longest passage loses its last sentence
            sizes[max(cut, key=lambda i: (sum(sizes[i]), i))].pop()
        else:  # every passage is down to one sentence: the lowest-ranked goes
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
        for uids, uspans, (a, b) in units[: len(keep)]:
            first = len(ids)
            ids += uids
            match += _token_bits(uspans, flags)
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


def with_reader_heads(model: GPT) -> GPT:
    """A reader model holding `model`'s weights, its new flags and heads at their zero start."""
    if model.config.reader:
        return model
    reader = GPT(replace(model.config, reader=True)).to(next(model.parameters()).device)
    missing, unexpected = reader.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and set(missing) <= {"match_emb", "read_tok.weight", "read_pool.weight", "read_cls.weight"}, (
        missing,
        unexpected,
    )
    return reader


# -- training ------------------------------------------------------------------------------------


@dataclass
class ReaderLossConfig:
    span_weight: float = 0.5  # start + end losses, each
    kind_weight: float = 0.5
    lm_weight: float = 0.1  # auxiliary language-model loss on sampled input tokens


def heads(model: GPT, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden states, per-token head scores (B, T, 3), final-token scores (B, 4) and the
    pointer logits (B, 1 + U): no-answer first, then one per sentence (-inf where padded)."""
    h = model.hidden(x["ids"], match=x["match"])
    tok_scores = model.read_tok(h).float()
    rows = torch.arange(h.size(0), device=h.device)
    cls = model.read_cls(h[rows, x["cls"]]).float()
    # a sentence's score: what its last token (which has read the whole sentence) says, plus the
    # evidence of every one of its tokens summed (a direct path for "how many question words")
    pool = F.pad(model.read_pool(h).float()[..., 0].cumsum(1), (1, 0))
    evidence = pool.gather(1, x["unit_last"] + 1) - pool.gather(1, x["unit_first"])
    sent = tok_scores[..., 0].gather(1, x["unit_last"]) + evidence
    sent = sent.masked_fill(~x["unit_mask"], float("-inf"))
    return h, tok_scores, cls, torch.cat([cls[:, :1], sent], 1)


def reader_loss(
    model: GPT, x: dict[str, torch.Tensor], y: dict[str, torch.Tensor], cfg: ReaderLossConfig = ReaderLossConfig()
) -> torch.Tensor:
    """Pointer + span + kind losses (+ auxiliary LM loss) of a batch, averaged over examples."""
    model = unwrap(model)
    return heads_loss(model, heads(model, x), x, y, cfg)


def heads_loss(
    model: GPT, out: tuple, x: dict[str, torch.Tensor], y: dict[str, torch.Tensor], cfg: ReaderLossConfig
) -> torch.Tensor:
    """`reader_loss` of the heads' outputs `out` (from `heads`), for callers that also use them.

    `y["unit"]`: gold sentence index, -1 = no answer, -2 = answerable but sentence unknown
    (yes/no items: the loss then asks only that the answer is *somewhere*).
    """
    h, tok_scores, cls, ptr = out
    logp = ptr.log_softmax(-1)
    unit = y["unit"]
    known = unit >= 0
    nll = torch.where(
        known,
        -logp.gather(1, (unit + 1).clamp(min=0)[:, None])[:, 0],
        torch.where(unit == -1, -logp[:, 0], -torch.logsumexp(logp[:, 1:], -1)),
    )
    loss = nll.mean()
    kind_ok = y["kind"] >= 0
    if kind_ok.any():
        loss = loss + cfg.kind_weight * F.cross_entropy(cls[kind_ok, 1:], y["kind"][kind_ok])
    has_span = y["start"] >= 0
    if has_span.any():
        pos = torch.arange(tok_scores.size(1), device=h.device)
        g = unit.clamp(min=0)[:, None]
        lo, hi = x["unit_first"].gather(1, g), x["unit_last"].gather(1, g)
        inside = (pos >= lo) & (pos <= hi)
        for col, key in ((1, "start"), (2, "end")):
            scores = tok_scores[..., col].masked_fill(~inside, float("-inf"))[has_span]
            loss = loss + cfg.span_weight * F.cross_entropy(scores, y[key][has_span])
    if cfg.lm_weight and "lm" in y:
        sel = y["lm"] >= 0
        if sel.any():
            lm = (
                linear_cross_entropy(h[sel], model.lm_head.weight, y["lm"][sel])
                if h.requires_grad
                else F.cross_entropy(model.lm_head(h[sel]).float(), y["lm"][sel])
            )
            loss = loss + cfg.lm_weight * lm
    return loss


# -- inference -----------------------------------------------------------------------------------


@dataclass
class Reading:
    """What the heads say about one input."""

    no_answer: float  # probability of the no-answer position
    kind: str  # "span" | "yes" | "no"
    kind_prob: float
    unit: Unit | None  # the best sentence (None when there is none)
    unit_prob: float  # its probability among [no-answer, sentences]
    span: tuple[int, int] | None  # character range of the span in the unit's passage text
    passage_probs: list[float] = field(default_factory=list)  # summed sentence probability per passage


def collate(inputs: list[ReaderInput]) -> dict[str, torch.Tensor]:
    """Pad reader inputs into one batch (ids, match, cls position, sentence token ranges)."""
    T = max(len(r.ids) for r in inputs)
    U = max(1, max(len(r.units) for r in inputs))
    B = len(inputs)
    x = {
        "ids": torch.zeros(B, T, dtype=torch.long),
        "match": torch.zeros(B, T, dtype=torch.long),
        "cls": torch.zeros(B, dtype=torch.long),
        "unit_first": torch.zeros(B, U, dtype=torch.long),
        "unit_last": torch.zeros(B, U, dtype=torch.long),
        "unit_mask": torch.zeros(B, U, dtype=torch.bool),
    }
    for b, r in enumerate(inputs):
        n = len(r.ids)
        x["ids"][b, :n] = torch.tensor(r.ids)
        x["match"][b, :n] = torch.tensor(r.match)
        x["cls"][b] = n - 1
        for u, unit in enumerate(r.units):
            x["unit_first"][b, u], x["unit_last"][b, u] = unit.first, unit.last
            x["unit_mask"][b, u] = True
    return x


def best_span(scores: torch.Tensor, max_tokens: int = 40) -> tuple[int, int]:
    """(start, end), inclusive, maximising start + end score over a sentence's token scores
    (T, 3), with start <= end < start + max_tokens."""
    s, e = scores[:, 1], scores[:, 2]
    n = s.numel()
    pair = s[:, None] + e[None, :]
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    flat = int(pair.masked_fill((j < i) | (j - i >= max_tokens), float("-inf")).argmax())
    return flat // n, flat % n


def shared_stems(inp: ReaderInput, passages: list[str], query: str) -> list[int]:
    """Per unit, how many word stems it shares with the query (the extractive baseline's rule)."""
    q = stems(query)
    return [len(q & stems(passages[u.passage - 1][u.start : u.end])) for u in inp.units]


@torch.no_grad()
def read(model: GPT, inp: ReaderInput, max_span_tokens: int = 40, prior: list[float] | None = None) -> Reading:
    """Run the heads on one input: no-answer probability, answer kind, best sentence and span.

    `prior` (one value per unit) is added to the sentences' log-probabilities when choosing the
    sentence, not to the no-answer decision: lexical evidence the assistant trusts besides the
    heads (AnswerConfig.reader_overlap_weight × shared stems)."""
    x = collate([inp])
    _, tok_scores, cls, ptr = heads(model, x)
    probs = ptr[0].softmax(-1)
    kind_p = cls[0, 1:].softmax(-1)
    k = int(kind_p.argmax())
    passage_probs = [0.0] * inp.passages
    for u, unit in enumerate(inp.units):
        passage_probs[unit.passage - 1] += float(probs[u + 1])
    if not inp.units:
        return Reading(float(probs[0]), KINDS[k], float(kind_p[k]), None, 0.0, None, passage_probs)
    choice = probs[1:].log()
    if prior is not None:
        choice = choice + torch.tensor(prior, dtype=choice.dtype)
    best = int(choice.argmax())
    unit = inp.units[best]
    a, b = best_span(tok_scores[0, unit.first : unit.last + 1], max_span_tokens)
    span = (inp.offsets[unit.first + a][1], inp.offsets[unit.first + b][2])
    return Reading(float(probs[0]), KINDS[k], float(kind_p[k]), unit, float(probs[best + 1]), span, passage_probs)
