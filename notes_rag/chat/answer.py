"""What one chat turn returns: the answer, its sources, the prompt plan and timings.

`Answer.to_dict` is the `ask --json` schema (documented in docs/CHAT.md); `PromptPlan` says what
`chat.prompt.fit_prompt` kept of the passages and the conversation, for `/debug` and `--verbose`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from notes_rag.chat.format import Turn


@dataclass
class Source:
    rank: int  # = the passage number in the prompt
    file: str
    line_start: int
    line_end: int
    heading: str  # heading path joined with " › "
    score: float
    text: str

    @property
    def lines(self) -> str:
        return f"{self.line_start}-{self.line_end}"

    @property
    def label(self) -> str:
        """The passage label of the chat format: `file › heading path`."""
        return f"{self.file} › {self.heading}" if self.heading else self.file


@dataclass
class PromptPlan:
    """What went into the prompt, for `/debug` and `--verbose`."""

    ids: list[int]
    system: str
    passages: int  # passages kept (the first ones by rank)
    dropped_passages: int
    passage_tokens: list[int]  # text tokens of each kept passage in the prompt ...
    passage_tokens_full: list[int]  # ... and before trimming
    turns: list[Turn]  # earlier turns kept, oldest first
    dropped_turns: int
    tokens: dict[str, int]  # system, passages, history, question, total, budget, context

    @property
    def trimmed(self) -> bool:
        return self.passage_tokens != self.passage_tokens_full

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("ids")
        return d


@dataclass
class Timings:
    retrieval_ms: float
    ttft_s: float  # question to first answer token: retrieval and prefill included
    tokens_per_s: float | None  # decode speed after the first token
    total_s: float
    new_tokens: int = 0


@dataclass
class Answer:
    question: str
    text: str
    abstained: bool
    abstain_reason: str | None  # "retrieval" (cosine under threshold) | "reader" | "model" | None
    lang: str
    sources: list[Source]  # retrieved passages, rank order (shown even when abstaining)
    cited: list[int]  # valid passage numbers cited, in order
    invalid_citations: list[int]  # numbers cited that name no passage of the prompt (dropped)
    top_cosine: float
    threshold: float | None
    timings: Timings
    prompt: PromptPlan | None  # None when retrieval abstained and the model did not run
    model_id: str = ""
    index_id: str = ""
    ungrounded_text: str | None = None  # the model's answer when the grounding guard replaced it
    # who produced the text shown: "reader" (pointer heads), "model" (generated), "quote" (the
    # grounding guard's fallback sentence) or "abstain"
    answered_by: str = "model"
    span: tuple[int, int] | None = None  # the answer span inside `text` (reader answers), for highlighting
    no_answer: float | None = None  # the reader's no-answer probability
    read_passages: int | None = None  # passages that fit the reader's input (the first ones)

    @property
    def prompt_passages(self) -> list[Source]:
        if self.prompt:
            return self.sources[: self.prompt.passages]
        return self.sources[: self.read_passages] if self.read_passages is not None else self.sources

    def to_dict(self) -> dict:
        """The `ask --json` schema."""
        return {
            "question": self.question,
            "answer": self.text,
            "abstained": self.abstained,
            "abstain_reason": self.abstain_reason,
            "lang": self.lang,
            "sources": [
                {
                    "rank": s.rank,
                    "file": s.file,
                    "lines": s.lines,
                    "line_start": s.line_start,
                    "line_end": s.line_end,
                    "heading": s.heading,
                    "score": s.score,
                    "text": s.text,
                }
                for s in self.sources
            ],
            "cited": self.cited,
            "top_cosine": self.top_cosine,
            "threshold": self.threshold,
            "timings": asdict(self.timings),
            "prompt": None if self.prompt is None else self.prompt.to_dict(),
            "model": self.model_id,
            "index": self.index_id,
            "answered_by": self.answered_by,
            "span": list(self.span) if self.span else None,
            "no_answer": self.no_answer,
            "model_text": self.ungrounded_text,  # generated but not shown
        }
