"""The one seam every model call goes through: what a backend must do, whatever runs the model.

Shaped like a transformers pipeline (prepare -> forward -> read): the caller tokenizes (always locally, so the
chat-template injection defences hold for every backend) and prepares a prompt prefix once; then

- `score`: batches of token ids after that prefix in -> log-probabilities of the given label tokens at the answer
  position (the last one), and that position's final hidden state where the backend can give it;
- `generate`: token ids in -> a stream of token ids out, sampled with `Sampling`;
- `candidates`: token ids in -> a few sampled continuations at once, for a guard to choose from.

Nothing here imports torch: results are numpy arrays and plain ints, so classify/reply/heads and everything above
them work the same over an in-process model and a model server.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from aio_core.profiles import ModelProfile, Sampling
from aio_core.templating import Tokenizer


@dataclass(frozen=True)
class Readout:
    """A hidden state to read in the same forward pass: decoder layer `layer`'s output (the last layer after the
    final norm) at the answer position ("answer"), or averaged over the text's own tokens ("mean")."""

    kind: str  # answer | mean
    layer: int


@dataclass(frozen=True)
class Candidate:
    """One sampled continuation: its tokens (without the end token) and, where the backend can give it, the mean
    hidden state over them at the readout asked for (what a reply judge reads)."""

    ids: list[int]
    hidden: np.ndarray | None  # [hidden size] float32, or None
    finished: bool  # ended by itself (an end token or a sentence end), not at the token limit


@dataclass(frozen=True)
class Scores:
    """What one forward pass read at the answer position of each row."""

    logprobs: np.ndarray  # [rows, tokens asked for], float32 log-softmax over the whole vocabulary
    hidden: np.ndarray | None  # [rows, readouts asked for, hidden size] float32; None when none was asked for
    # A server's top-K only: tokens outside a row's top K are -inf in `logprobs`, and this is the row's K-th
    # log-probability, the most any of them can have (None = every value is exact).
    floor: np.ndarray | None = None


_BACKGROUND = contextvars.ContextVar("aio_background", default=False)


@contextlib.contextmanager
def background_work() -> Iterator[None]:
    """Mark the model calls made inside as background work (a screening job). A backend that shares one model
    between sessions lets interactive calls (a chat reply, a chat message's label) go first."""
    token = _BACKGROUND.set(True)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


def in_background() -> bool:
    return _BACKGROUND.get()


class Prefix(Protocol):
    """A prompt prefix prepared once and shared by every later batch (in process: its keys and values)."""

    ids: list[int]


class Backend(Protocol):
    """A loaded model. `name` is AIO_MODEL as written; `fingerprint` identifies the weights themselves, so that
    anything learned on top of them (a label head) is never applied to other weights."""

    name: str
    title: str  # the model's own name, for people (a hub id, a folder's recorded id or name, a served model's name)
    source: str  # tiny-random | random-qwen1.5-0.5b | folder | gguf | hub | openai
    profile: ModelProfile
    tokenizer: Tokenizer
    is_random: bool  # random weights: every label and reply is meaningless
    fingerprint: str
    reads_hidden_states: bool  # False where `score` can only return log-probabilities (a server)
    layers: int  # decoder layers, for asking for hidden states by number
    max_scored_tokens: int | None  # the most label tokens one `score` can read (a server's top-logprobs limit)

    @property
    def description(self) -> str: ...

    @property
    def runtime(self) -> dict[str, object]:
        """Facts for reports and the benchmark: dtype, device, threads, load seconds."""
        ...

    def stop_ids(self) -> set[int]: ...

    def prefix(self, ids: list[int]) -> Prefix: ...

    def score(self, prefix: Prefix, bodies: Sequence[list[int]], token_ids: Sequence[int], *,
              readouts: Sequence[Readout] = (), text_tail: int = 0, use_prefix_cache: bool = True) -> Scores:
        """`text_tail`: how many tokens at the end of every body are prompt, not text (left out of "mean")."""
        ...

    def generate(self, ids: list[int], sampling: Sampling, *, stop_at_end: bool = True) -> Iterator[int]: ...

    def candidates(self, ids: list[int], sampling: Sampling, n: int, *, ends: frozenset[int] = frozenset(),
                   readout: Readout | None = None) -> list[Candidate]:
        """`n` continuations of `ids` sampled at once (the prompt is read once), each stopped at an end token or after
        a token in `ends` (kept), with the mean hidden state of its tokens at `readout` where the backend has one."""
        ...
