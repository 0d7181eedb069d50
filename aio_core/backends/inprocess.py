"""The default backend: the model loaded into this process with transformers, shared by every session.

One lock serialises forward passes: the model has no per-request state, and on a 2-core CPU two concurrent passes
would only slow each other down. `generate` takes the lock per token, so a long reply never blocks another
session's label for more than one step; sampling runs inside the lock too, because torch ops beside another
session's forward pass share the CPU thread pool and can round differently, and then a seeded reply would depend
on what else was running. Sampling itself is transformers' own logits processors and warpers.

Background work (a screening job, `background_work()`) gives way: it takes the lock only when no interactive call
is waiting and none has run for a moment, so it pauses while a reply streams. Taking turns by the lock alone, a reply
during a screening ran at 0.8 tokens/s instead of 8.1 (eval model), every token waiting for a 16-text pass.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import (
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.cache_utils import DynamicCache

from aio_core.backends.base import Candidate, Readout, Scores, in_background
from aio_core.backends.kvcache import SharedPrefixCache, compute_prefix
from aio_core.backends.loading import LoadedModel, load_model
from aio_core.profiles import ModelProfile, Sampling
from aio_core.settings import Settings
from aio_core.templating import Tokenizer


@dataclass(frozen=True)
class TorchPrefix:
    ids: list[int]
    kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]


class _SuppressWithMask(SuppressTokensLogitsProcessor):
    """transformers' SuppressTokensLogitsProcessor with its vocabulary mask computed once per reply instead of at every
    token (torch.isin over a 150k vocabulary and tens of thousands of suppressed ids cost ~20 ms a token)."""

    _mask: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if self._mask is None or self._mask.shape[-1] != scores.shape[-1]:
            vocab = torch.arange(scores.shape[-1], device=scores.device)
            self._mask = torch.isin(vocab, self.suppress_tokens.to(scores.device))
        return scores.masked_fill(self._mask, -float("inf"))


def logits_processors(sampling: Sampling) -> LogitsProcessorList:
    """transformers' processors for these options, in the order `generate` applies them (penalties, then warpers)."""
    processors = LogitsProcessorList()
    if sampling.suppress_ids:
        processors.append(_SuppressWithMask(list(sampling.suppress_ids)))
    if sampling.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(sampling.repetition_penalty))
    if sampling.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGramLogitsProcessor(sampling.no_repeat_ngram_size))
    if sampling.temperature > 0:
        if sampling.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(sampling.temperature))
        if sampling.top_k > 0:
            processors.append(TopKLogitsWarper(sampling.top_k))
        if sampling.top_p < 1.0:
            processors.append(TopPLogitsWarper(sampling.top_p))
    return processors


class InProcessBackend:
    """A transformers model in this process (CPU or CUDA)."""

    reads_hidden_states = True
    max_scored_tokens = None

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer: Tokenizer = loaded.tokenizer
        self.name, self.source, self.is_random = loaded.name, loaded.source, loaded.is_random
        self.title = loaded.title
        self.profile: ModelProfile = loaded.profile
        self.fingerprint = loaded.fingerprint
        self.device = loaded.device
        self.layers: int = loaded.model.config.num_hidden_layers
        self.lock = threading.RLock()
        self.turns = Turns(self.lock)

    @property
    def description(self) -> str:
        text = f"{self.name} ({self.source}, {str(self.loaded.dtype).removeprefix('torch.')}, {self.device.type})"
        return text + (" - random weights, output is meaningless" if self.is_random else "")

    @property
    def runtime(self) -> dict[str, object]:
        return {"dtype": str(self.loaded.dtype).removeprefix("torch."), "device": self.device.type,
                "threads": torch.get_num_threads(), "load_s": self.loaded.load_seconds}

    def stop_ids(self) -> set[int]:
        """Token ids that end a reply: the template's end-of-turn and the model's end-of-text."""
        tokenizer = self.tokenizer
        ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>"),
               tokenizer.convert_tokens_to_ids("<|endoftext|>")}
        configured = self.model.generation_config.eos_token_id
        ids |= set(configured) if isinstance(configured, list) else {configured}
        return {i for i in ids if isinstance(i, int) and i >= 0 and i != tokenizer.unk_token_id}

    def prefix(self, ids: list[int]) -> TorchPrefix:
        with self.turns.step():
            return TorchPrefix(list(ids), compute_prefix(self.model, ids))

    @torch.inference_mode()
    def score(self, prefix: TorchPrefix, bodies: Sequence[list[int]], token_ids: Sequence[int], *,
              readouts: Sequence[Readout] = (), text_tail: int = 0, use_prefix_cache: bool = True) -> Scores:
        """Left-padded batch, so the last position is every row's answer position; only it reaches the output
        layer. With the prefix cache the prompt prefix is read from its shared keys and values, not recomputed."""
        rows = list(bodies) if use_prefix_cache else [prefix.ids + list(b) for b in bodies]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row):] = torch.tensor(row)
            mask[i, width - len(row):] = 1
        offset = len(prefix.ids) if use_prefix_cache else 0
        # Each row's real tokens get consecutive positions right after the prefix, whatever padding precedes them.
        positions = offset + (mask.cumsum(dim=1) - 1).clamp(min=0)
        kwargs: dict[str, object] = {"position_ids": positions.to(self.device)}
        if bool(mask.all()):
            kwargs["attention_mask"] = None  # no padding: the plain causal path is faster
        else:
            full = torch.cat([torch.ones((len(rows), offset), dtype=torch.long), mask], dim=1) if offset else mask
            kwargs["attention_mask"] = full.to(self.device)
        if use_prefix_cache:
            kwargs.update(cache=SharedPrefixCache(prefix.kv, len(rows)), use_cache=True)
        else:
            kwargs["use_cache"] = False
        if readouts:
            kwargs["output_hidden_states"] = True
        wanted = torch.tensor(list(token_ids))
        with self.turns.step():
            out = self.model.model(input_ids=ids.to(self.device), **kwargs)
            last = out.last_hidden_state[:, -1, :]
            logits = self.model.lm_head(last).float().cpu()
            logprobs = torch.log_softmax(logits, dim=-1)[:, wanted]
            states = self._readouts(out.hidden_states, mask, readouts, text_tail) if readouts else None
        return Scores(logprobs=logprobs.numpy(), hidden=states)

    @staticmethod
    def _readouts(layers: tuple[torch.Tensor, ...], mask: torch.Tensor, readouts: Sequence[Readout],
                  text_tail: int) -> np.ndarray:
        """hidden_states[n] is decoder layer n's output (the last entry after the final norm); "mean" averages the
        positions that hold the text: real tokens (mask) other than the prompt's tail."""
        text = mask.clone().float()
        if text_tail:
            text[:, -text_tail:] = 0
        weights = (text / text.sum(dim=1, keepdim=True).clamp(min=1)).to(layers[0].device)
        picked = [layers[r.layer][:, -1, :] if r.kind == "answer" else
                  (layers[r.layer] * weights[..., None].to(layers[r.layer].dtype)).sum(dim=1) for r in readouts]
        return torch.stack(picked, dim=1).float().cpu().numpy()

    def generate(self, ids: list[int], sampling: Sampling, *, stop_at_end: bool = True) -> Iterator[int]:
        """Prefill, then one token per step on a KV cache, the lock taken per step."""
        processors = logits_processors(sampling)
        generator = torch.Generator().manual_seed(sampling.seed) if sampling.seed is not None else None
        stop = self.stop_ids()
        seen = torch.tensor([ids])
        cache = DynamicCache(config=self.model.config)
        step_input = torch.tensor([ids], device=self.device)
        for _ in range(sampling.max_new_tokens):
            with self.turns.step(), torch.inference_mode():
                logits = self.model(input_ids=step_input, cache=cache, use_cache=True, logits_to_keep=1).logits
                scores = processors(seen, logits[:, -1, :].float().cpu())
                if sampling.temperature <= 0:
                    token = int(scores[0].argmax())
                else:
                    token = int(torch.multinomial(torch.softmax(scores[0], dim=-1), 1, generator=generator))
            if stop_at_end and token in stop:
                return
            yield token
            seen = torch.cat([seen, torch.tensor([[token]])], dim=1)
            step_input = torch.tensor([[token]], device=self.device)


    def candidates(self, ids: list[int], sampling: Sampling, n: int, *, ends: frozenset[int] = frozenset(),
                   readout: Readout | None = None) -> list[Candidate]:
        """The prompt is read once and its keys and values copied for `n` rows; then one batched step per token,
        each row sampled with the same processors (seeded once for the batch). A finished row is fed its last token
        again until every row is done (the rows stay aligned, so no padding is needed)."""
        processors = logits_processors(sampling)
        generator = torch.Generator().manual_seed(sampling.seed) if sampling.seed is not None else None
        stop = self.stop_ids()
        cache = DynamicCache(config=self.model.config)
        with self.turns.step(), torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids], device=self.device), cache=cache, use_cache=True,
                             logits_to_keep=1)
        cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1, :].float().cpu().expand(n, -1)
        seen = torch.tensor([ids]).repeat(n, 1)
        tokens: list[list[int]] = [[] for _ in range(n)]
        done, finished = [False] * n, [False] * n
        sums = None
        for _ in range(sampling.max_new_tokens):
            with self.turns.step(), torch.inference_mode():
                scores = processors(seen, logits)
                if sampling.temperature <= 0:
                    picked = scores.argmax(dim=-1)
                else:
                    picked = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator)[:, 0]
                fed = []
                counted = []
                for row in range(n):
                    token = int(picked[row])
                    if done[row]:
                        fed.append(tokens[row][-1] if tokens[row] else token)
                        counted.append(False)
                        continue
                    if token in stop:
                        done[row] = finished[row] = True
                        fed.append(token)
                        counted.append(False)
                        continue
                    tokens[row].append(token)
                    fed.append(token)
                    counted.append(True)
                    if token in ends:
                        done[row] = finished[row] = True
                step = torch.tensor(fed).unsqueeze(1)
                seen = torch.cat([seen, step], dim=1)
                if all(done) and readout is None:
                    break
                result = self.model(input_ids=step.to(self.device), cache=cache, use_cache=True, logits_to_keep=1,
                                    output_hidden_states=readout is not None)
                logits = result.logits[:, -1, :].float().cpu()
                if readout is not None:
                    state = result.hidden_states[readout.layer][:, -1, :].float().cpu()
                    mask = torch.tensor(counted, dtype=torch.float32).unsqueeze(1)
                    sums = state * mask if sums is None else sums + state * mask
            if all(done):
                break
        found = []
        for row in range(n):
            hidden = (sums[row] / max(1, len(tokens[row]))).numpy() if sums is not None else None
            found.append(Candidate(ids=tokens[row], hidden=hidden, finished=finished[row]))
        return found


class Turns:
    """Whose turn it is to use the model: interactive calls first. A background call waits until no interactive call
    is waiting or running and the last one ended `grace` seconds ago (the gap between two tokens of a streamed reply
    is far shorter), then takes the lock."""

    def __init__(self, lock: threading.RLock, grace: float = 0.25) -> None:
        self.lock, self.grace = lock, grace
        self._interactive = 0  # interactive calls waiting for the lock or holding it
        self._last = float("-inf")  # when the last interactive call ended
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        if in_background():
            with self._changed:
                while self._interactive or (left := self._last + self.grace - time.monotonic()) > 0:
                    self._changed.wait(None if self._interactive else left)
            with self.lock:
                yield
            return
        with self._changed:
            self._interactive += 1
        try:
            with self.lock:
                yield
        finally:
            with self._changed:
                self._interactive -= 1
                self._last = time.monotonic()
                self._changed.notify_all()


def load_inprocess(settings: Settings) -> InProcessBackend:
    return InProcessBackend(load_model(settings))
