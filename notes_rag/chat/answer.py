"""What one chat turn returns: the answer, its sources and timings.

`Answer.to_dict` is the `ask --json` schema (documented in docs/CHAT.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Source:
    rank: int  # = the passage number in the prompt
    file: str
    line_start: int
    line_end: int
    heading: str  # heading path joined with " › "
    score: float
    text: str
    location: str = ""  # "p12", "cells 3-5" in files cited by page or cell (search.Hit)

    @property
    def lines(self) -> str:
        return f"{self.line_start}-{self.line_end}"

    @property
    def citation(self) -> str:
        """`notes.md:12-18`, `slides.pdf:p12`, `nb.ipynb:cell 7`."""
        return f"{self.file}:{self.location or self.lines}"

    @property
    def label(self) -> str:
        """The passage label of the chat format: `file › heading path`."""
        return f"{self.file} › {self.heading}" if self.heading else self.file


def sources_of(hits) -> list[Source]:
    """The sources a turn shows for a search's hits (index/search.py `Hit`), best first."""
    return [
        Source(h.rank, h.file, h.line_start, h.line_end, " › ".join(h.heading_path), h.score, h.text, h.location)
        for h in hits
    ]


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
    model_id: str = ""
    index_id: str = ""
    # who produced the text shown: "model" (our GPT wrote it) or "abstain" (the abstention string:
    # retrieval's, or the model's own, an empty answer included)
    answered_by: str = "model"
    read_passages: int | None = None  # passages that fit the model's input (the first ones)
    no_answer: float | None = None  # the model's no-answer score (chat/writer.py); None when it did not run
    notes: list[str] = field(default_factory=list)  # what the user should know (a shortened question)

    @property
    def prompt_passages(self) -> list[Source]:
        """The passages the model read (none when retrieval abstained)."""
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
                    "location": s.location,
                    "citation": s.citation,
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
            "model": self.model_id,
            "index": self.index_id,
            "answered_by": self.answered_by,
            "read_passages": self.read_passages,
            "no_answer": self.no_answer,
            "notes": self.notes,
        }
