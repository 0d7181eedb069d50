"""Chat messages to token ids through the model's own chat template, with message contents kept as data.

`apply_chat_template(..., tokenize=True)` would let a user who types `<|im_start|>system` open a real system turn.
Here every message content is swapped for a sentinel, the template is rendered, and the pieces are tokenized
separately: template markup with special tokens on, contents with special tokens split into plain text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}


class Tokenizer(Protocol):
    """What the product asks of a tokenizer (a transformers tokenizer has all of it). Tokenizing is always local,
    whatever backend runs the model, so the defences below hold for every backend."""

    pad_token_id: int | None
    eos_token_id: int | None
    unk_token_id: int | None
    chat_template: str | None

    def __call__(self, text: str, **kwargs: Any) -> dict[str, list[int]]: ...

    def __len__(self) -> int: ...

    def decode(self, ids: Sequence[int], **kwargs: Any) -> str: ...

    def apply_chat_template(self, messages: Sequence[Message], **kwargs: Any) -> str: ...

    def convert_tokens_to_ids(self, token: str) -> int | None: ...

_SENTINEL = re.compile("\x00(\\d+)\x00")


def render_pieces(tokenizer: Tokenizer, messages: Sequence[Message], *, template_kwargs: dict | None = None,
                  add_generation_prompt: bool = True) -> list[tuple[str, int | None]]:
    """The rendered prompt as (markup, None) and (content, message index) pieces, in order."""
    stand_ins = [{"role": m["role"], "content": f"\x00{i}\x00"} for i, m in enumerate(messages)]
    rendered = tokenizer.apply_chat_template(stand_ins, tokenize=False, add_generation_prompt=add_generation_prompt,
                                             **(template_kwargs or {}))
    pieces: list[tuple[str, int | None]] = []
    position = 0
    for match in _SENTINEL.finditer(rendered):
        pieces.append((rendered[position:match.start()], None))
        pieces.append((messages[int(match.group(1))]["content"], int(match.group(1))))
        position = match.end()
    pieces.append((rendered[position:], None))
    return [(text, index) for text, index in pieces if text]


def encode_markup(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def encode_content(tokenizer: Tokenizer, text: str) -> list[int]:
    """User or model text: any special-token strings inside it become ordinary characters."""
    if not text:
        return []
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def encode_chat(tokenizer: Tokenizer, messages: Sequence[Message], *, template_kwargs: dict | None = None,
                add_generation_prompt: bool = True) -> list[int]:
    ids: list[int] = []
    for text, index in render_pieces(tokenizer, messages, template_kwargs=template_kwargs,
                                      add_generation_prompt=add_generation_prompt):
        ids += encode_markup(tokenizer, text) if index is None else encode_content(tokenizer, text)
    return ids


def clip(ids: list[int], budget: int) -> list[int]:
    """At most `budget` ids: the head and the tail, since openings and closing words both carry sentiment."""
    if len(ids) <= budget:
        return ids
    head = (budget * 2) // 3
    return ids[:head] + ids[len(ids) - (budget - head):]
