"""Known small Qwen chat models and what differs between them: generation defaults and chat-template switches.

Switching models is one setting (`AIO_MODEL`); the profile is found from the hub id, the folder name, the GGUF file
name or the `_name_or_path` recorded in a folder's config.json. Unknown models get the seed article's defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GenerationDefaults:
    """Sampling settings for replies. The seed article used temperature 0.7, top_p 0.9 and 128 new tokens."""

    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 0  # 0 = no top-k filter
    repetition_penalty: float = 1.0
    max_new_tokens: int = 128


@dataclass(frozen=True)
class ModelProfile:
    key: str
    family: str  # qwen1.5 | qwen2 | qwen2.5 | qwen3 | unknown
    hub_id: str
    context_length: int
    generation: GenerationDefaults
    # Extra variables for the chat template: Qwen3 must be told not to "think" or the reply starts with <think>.
    template_kwargs: dict[str, object] = field(default_factory=dict)


# The seed article's values for the default model; the model cards' repetition penalty and top-k for all, because a
# 0.5B model loops without them. Qwen3 values are the card's "non-thinking mode" recommendation.
_PROFILES = (
    ModelProfile("qwen1.5-0.5b-chat", "qwen1.5", "Qwen/Qwen1.5-0.5B-Chat", 32768,
                 GenerationDefaults(0.7, 0.9, 20, 1.1)),
    ModelProfile("qwen1.5-1.8b-chat", "qwen1.5", "Qwen/Qwen1.5-1.8B-Chat", 32768,
                 GenerationDefaults(0.7, 0.8, 20, 1.1)),
    ModelProfile("qwen2-0.5b-instruct", "qwen2", "Qwen/Qwen2-0.5B-Instruct", 32768,
                 GenerationDefaults(0.7, 0.8, 20, 1.1)),
    ModelProfile("qwen2.5-0.5b-instruct", "qwen2.5", "Qwen/Qwen2.5-0.5B-Instruct", 32768,
                 GenerationDefaults(0.7, 0.8, 20, 1.05)),
    ModelProfile("qwen2.5-1.5b-instruct", "qwen2.5", "Qwen/Qwen2.5-1.5B-Instruct", 32768,
                 GenerationDefaults(0.7, 0.8, 20, 1.05)),
    ModelProfile("qwen3-0.6b", "qwen3", "Qwen/Qwen3-0.6B", 40960,
                 GenerationDefaults(0.7, 0.8, 20, 1.05), {"enable_thinking": False}),
)
GENERIC = ModelProfile("unknown", "unknown", "", 4096, GenerationDefaults())
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
