"""The warm assistant: a streamed reply to a chat history, its tone set by the user's detected sentiment.

The decode loop is written out (prefill, then one token per step on a KV cache) rather than calling `generate` in a
thread, so that the engine lock is taken per step: several dashboard sessions interleave their replies and labels
instead of queueing behind one long answer. Text is yielded as soon as it is complete UTF-8.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from transformers.cache_utils import DynamicCache

from aio_core.classify import Sentiment
from aio_core.engine import Engine
from aio_core.profiles import GenerationDefaults
from aio_core.prompts import assistant_system_prompt, detect_lang
from aio_core.templating import Message, clip, encode_chat, encode_content

_MARKUP_TOKENS = 8  # per turn: <|im_start|>role\n ... <|im_end|>\n


def trim_history(tokenizer: object, history: Sequence[Message], budget: int) -> list[Message]:
    """The most recent turns that fit in `budget` tokens; the last message always stays (clipped if it must)."""
    if not history:
        raise ValueError("the chat history is empty; it needs at least the user's message")
    last = dict(history[-1])
    ids = encode_content(tokenizer, last["content"])
    if len(ids) > budget // 2:
        last["content"] = tokenizer.decode(clip(ids, budget // 2), skip_special_tokens=False)
    kept = [last]
    used = min(len(ids), budget // 2) + _MARKUP_TOKENS
    for message in reversed(history[:-1]):
        cost = len(encode_content(tokenizer, message["content"])) + _MARKUP_TOKENS
        if used + cost > budget:
            break
        kept.append(dict(message))
        used += cost
    kept.reverse()
    while kept and kept[0]["role"] == "assistant":  # a history starts with the user's turn
        kept.pop(0)
    return kept or [last]


def build_messages(engine: Engine, history: Sequence[Message], sentiment: Sentiment | None) -> list[Message]:
    turns = [m for m in history if m["role"] in ("user", "assistant")]
    last_user = next((m["content"] for m in reversed(turns) if m["role"] == "user"), "")
    system = assistant_system_prompt(detect_lang(last_user), sentiment.label if sentiment else None,
                                     bool(sentiment and sentiment.uncertain))
    return [{"role": "system", "content": system}, *trim_history(engine.tokenizer, turns,
                                                                 engine.settings.history_tokens)]


def _sample(logits: torch.Tensor, seen: torch.Tensor, options: GenerationDefaults,
            generator: torch.Generator | None) -> int:
    logits = logits.to(torch.float32, copy=True)  # edited in place below; never the model's own tensor
    if options.repetition_penalty != 1.0 and seen.numel():
        picked = logits[seen]
        logits[seen] = torch.where(picked > 0, picked / options.repetition_penalty,
                                   picked * options.repetition_penalty)
    if options.temperature <= 0:
        return int(logits.argmax())
    logits = logits / options.temperature
    if options.top_k > 0:
        kth = torch.topk(logits, min(options.top_k, logits.numel())).values[-1]
        logits[logits < kth] = float("-inf")
    probs = torch.softmax(logits, dim=-1)
    if options.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest set of tokens whose mass reaches top_p (the first token always stays).
        drop = sorted_probs.cumsum(0) - sorted_probs > options.top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


@dataclass(frozen=True)
class ReplyOptions:
    """Overrides of the model profile's generation defaults; None keeps the default."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    max_new_tokens: int | None = None
    seed: int | None = None  # fixed seed: the same history gives the same reply


DEFAULT_OPTIONS = ReplyOptions()  # frozen, so one shared default is safe


def generate_tokens(engine: Engine, messages: Sequence[Message], options: ReplyOptions = DEFAULT_OPTIONS, *,
                    stop_at_end: bool = True) -> Iterator[int]:
    """Token ids of the assistant's next turn, one at a time, until an end token (unless `stop_at_end` is False,
    as when the benchmark times a fixed length) or the token limit."""
    defaults = engine.loaded.profile.generation
    settings = replace(defaults, **{k: v for k, v in vars(options).items() if k != "seed" and v is not None})
    generator = torch.Generator().manual_seed(options.seed) if options.seed is not None else None
    prompt = encode_chat(engine.tokenizer, messages, template_kwargs=engine.loaded.profile.template_kwargs)
    stop = engine.stop_ids()
    seen = torch.tensor(prompt)
    cache = DynamicCache(config=engine.model.config)
    step_input = torch.tensor([prompt], device=engine.device)
    for _ in range(settings.max_new_tokens):
        # Sampling inside the lock too: torch ops running beside another session's forward pass share the CPU
        # thread pool and can round differently, and then a seeded reply would depend on what else was running.
        with engine.lock, torch.inference_mode():
            logits = engine.model(input_ids=step_input, cache=cache, use_cache=True, logits_to_keep=1).logits
            token = _sample(logits[0, -1].cpu(), seen, settings, generator)
        if stop_at_end and token in stop:
            return
        yield token
        seen = torch.cat([seen, torch.tensor([token])])
        step_input = torch.tensor([[token]], device=engine.device)


def stream_text(tokenizer: object, tokens: Iterator[int]) -> Iterator[str]:
    """Decoded text as it becomes final: a character split across tokens is held until it is complete."""
    ids: list[int] = []
    sent = ""
    for token in tokens:
        ids.append(token)
        text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence; the next token may finish it
            continue
        if text.startswith(sent) and len(text) > len(sent):
            yield text[len(sent):]
            sent = text
    text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    if text.startswith(sent) and len(text) > len(sent):
        yield text[len(sent):]


def reply(history: Sequence[Message], *, engine: Engine, sentiment: Sentiment | None = None,
          options: ReplyOptions = DEFAULT_OPTIONS) -> Iterator[str]:
    """The assistant's reply to `history` (ending with the user's message), streamed as text pieces."""
    messages = build_messages(engine, history, sentiment)
    return stream_text(engine.tokenizer, generate_tokens(engine, messages, options))


def reply_text(history: Sequence[Message], *, engine: Engine, sentiment: Sentiment | None = None,
               options: ReplyOptions = DEFAULT_OPTIONS) -> str:
    """The whole reply at once (decoded in one go, not joined from the stream)."""
    messages = build_messages(engine, history, sentiment)
    ids = list(generate_tokens(engine, messages, options))
    return engine.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
