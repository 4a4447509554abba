"""What both decoders share, without torch: the sampling settings, the copy decode loop and the
text stream.

The torch engine (model/engine.py) and the numpy one (model/numpy_decode.py) read the same
`SamplingConfig` (greedy when temperature is 0, else temperature with optional top-k / top-p,
seeded), run the same loop over their decoder (`decode_copy`: stop ids, the word constraint,
the first-step hook) and the chat turns either one's ids into text with `stream_text`. None of it
needs torch, so `ask`/`chat` import it from here and start without it; engine.py re-exports
`SamplingConfig` and `stream_text`.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from notes_rag.model.constraint import WordConstraint


@dataclass
class SamplingConfig:
    temperature: float = 0.0  # 0 = greedy
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int = 200
    seed: int | None = None


def decode_copy(
    decoder,
    cfg: SamplingConfig,
    sample: Callable,
    stop_ids: Iterable[int] = (),
    constraint: WordConstraint | None = None,
    on_first: Callable | None = None,
) -> Iterator[int]:
    """Yield new ids from a copy decoder (`prefill()`, `step(id)`, `room`: engine.CopyDecoder or
    numpy_gpt.NumpyCopyDecoder), stopping at a stop id (not yielded) or the limit. `sample(logp)`
    picks an index of the log-probabilities it is given (the decoder's sampler, seeded once).
    With a `constraint`, only tokens it allows are chosen (it is advanced with each one); it
    decides the stop ids too, so a word never ends unfinished, and it sees the decoder's
    `pointer` (model/unit_copy.py starts a copy where the pointed unit starts). `on_first` sees
    the first step's log-probabilities and returns the ones to decode with."""
    stop = set(stop_ids)
    limit = min(cfg.max_new_tokens, decoder.room)
    logp = decoder.prefill()
    if on_first is not None:
        logp = on_first(logp)
    for i in range(limit):
        if constraint is None:
            nxt = sample(logp)
        else:  # sampling renormalises over the allowed candidates
            pointer = getattr(decoder, "pointer", None)  # where the copy head points (model/unit_copy.py)
            allowed = constraint.candidates(logp, greedy=cfg.temperature <= 0, pointer=pointer)
            if not allowed:
                return
            nxt = allowed[0] if len(allowed) == 1 else allowed[sample(logp[allowed])]
        if nxt in stop:
            return
        if constraint is not None:
            constraint.push(nxt)
        yield nxt
        if i + 1 < limit:
            logp = decoder.step(nxt)


def stream_text(token_bytes, ids: Iterable[int]) -> Iterator[str]:
    """Turn ids into text pieces that never split a multi-byte character.

    `token_bytes(id) -> bytes` (e.g. `Tokenizer.token_bytes`). Bytes of a character that spans
    tokens are held back until it is complete; invalid sequences become U+FFFD. A character
    still unfinished when the ids end (an answer cut by its length limit) is dropped, not shown as
    U+FFFD.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for i in ids:
        piece = decoder.decode(token_bytes(i))
        if piece:
            yield piece
