"""Known small Qwen chat models and what differs between them: generation defaults and chat-template switches.

Switching models is one setting (`AIO_MODEL`); the profile is found from the hub id, the folder name, the GGUF file
name or the `_name_or_path` recorded in a folder's config.json. Unknown models get the seed article's defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sampling:
    """How a reply is sampled. The seed article used temperature 0.7, top_p 0.9 and 128 new tokens; every backend
    applies these the same way (in process through transformers' logits processors, on a server as its options)."""

    temperature: float = 0.7  # 0 = greedy
    top_p: float = 0.9
    top_k: int = 0  # 0 = no top-k filter
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0  # 0 = off; n = no n-gram of the reply (or its prompt) appears twice
    max_new_tokens: int = 128
    seed: int | None = None  # fixed seed: the same prompt gives the same reply
    suppress_ids: tuple[int, ...] = ()  # tokens never sampled (the other language's script, see reply.py)


@dataclass(frozen=True)
class ModelProfile:
    key: str
    family: str  # qwen1.5 | qwen2 | qwen2.5 | qwen3 | unknown
    hub_id: str
    context_length: int
    generation: Sampling
    # Extra variables for the chat template: Qwen3 must be told not to "think" or the reply starts with <think>.
    template_kwargs: dict[str, object] = field(default_factory=dict)


# The seed article's values for the default model; the model cards' repetition penalty and top-k for all, because a
# 0.5B model loops without them. Qwen3 values are the card's "non-thinking mode" recommendation.
_PROFILES = (
    ModelProfile(key="qwen1.5-0.5b-chat", family="qwen1.5", hub_id="Qwen/Qwen1.5-0.5B-Chat", context_length=32768,
                 generation=Sampling(temperature=0.7, top_p=0.9, top_k=20, repetition_penalty=1.1)),
    ModelProfile(key="qwen1.5-1.8b-chat", family="qwen1.5", hub_id="Qwen/Qwen1.5-1.8B-Chat", context_length=32768,
                 generation=Sampling(temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.1)),
    ModelProfile(key="qwen2-0.5b-instruct", family="qwen2", hub_id="Qwen/Qwen2-0.5B-Instruct",
                 context_length=32768,
                 generation=Sampling(temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.1)),
    ModelProfile(key="qwen2.5-0.5b-instruct", family="qwen2.5", hub_id="Qwen/Qwen2.5-0.5B-Instruct",
                 context_length=32768,
                 generation=Sampling(temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05)),
    ModelProfile(key="qwen2.5-1.5b-instruct", family="qwen2.5", hub_id="Qwen/Qwen2.5-1.5B-Instruct",
                 context_length=32768,
                 generation=Sampling(temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05)),
    ModelProfile(key="qwen3-0.6b", family="qwen3", hub_id="Qwen/Qwen3-0.6B", context_length=40960,
                 generation=Sampling(temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05),
                 template_kwargs={"enable_thinking": False}),
)
GENERIC = ModelProfile(key="unknown", family="unknown", hub_id="", context_length=4096, generation=Sampling())
PROFILES = {p.key: p for p in _PROFILES}

# Qwen2.5-Coder and other variants of a family and size share the family's chat format and sampling advice.
_PATTERNS = (
    (re.compile(r"qwen1\.5-(?:[a-z]+-)*0\.5b"), "qwen1.5-0.5b-chat"),
    (re.compile(r"qwen1\.5-(?:[a-z]+-)*1\.8b"), "qwen1.5-1.8b-chat"),
    (re.compile(r"qwen2-(?:[a-z]+-)*0\.5b"), "qwen2-0.5b-instruct"),
    (re.compile(r"qwen2\.5-(?:[a-z]+-)*0\.5b"), "qwen2.5-0.5b-instruct"),
    (re.compile(r"qwen2\.5-(?:[a-z]+-)*1\.5b"), "qwen2.5-1.5b-instruct"),
    (re.compile(r"qwen3-(?:[a-z]+-)*0\.6b"), "qwen3-0.6b"),
)


def normalize_name(name: str) -> str:
    """'Qwen/qwen1_5-0_5b-chat-q8_0.gguf' and 'Qwen2.5 Coder 0.5B Instruct' -> comparable lower-case names."""
    name = name.strip().lower().replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"(?<=\d)_(?=\d)", ".", name)  # GGUF files write 1.5 as 1_5
    return re.sub(r"[\s_]+", "-", name)


def find_profile(*names: str | None) -> ModelProfile:
    """The profile of the first name that matches a known model, else GENERIC."""
    for name in names:
        if not name:
            continue
        normal = normalize_name(name)
        for pattern, key in _PATTERNS:
            if pattern.search(normal):
                return PROFILES[key]
    return GENERIC
