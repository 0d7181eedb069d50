"""The engine: one loaded model serving both roles (sentiment analyst and chat assistant), safe to share.

`get_engine(settings)` is the one place the process-wide instance is created (the dashboard wraps it in
`st.cache_resource`); everything else receives the engine as an argument. One lock serialises forward passes: the
model has no per-request state, and on a 2-core CPU two concurrent passes would only slow each other down. Replies take
the lock per generated token, so a long reply never blocks another session's label for more than one step.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cache

import torch

from aio_core.loading import LoadedModel, load_model
from aio_core.prompts import PromptVersion, get_prompt
from aio_core.settings import Settings


@dataclass
class Engine:
    loaded: LoadedModel
    settings: Settings
    prompt: PromptVersion
    lock: threading.RLock = field(default_factory=threading.RLock)
    # Per (prompt version, language): the prepared classifier prompt, filled on first use (see classify.py).
    prepared: dict[tuple[str, str], object] = field(default_factory=dict)

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    @property
    def tokenizer(self) -> object:
        return self.loaded.tokenizer

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    @property
    def description(self) -> str:
        return self.loaded.description

    def stop_ids(self) -> set[int]:
        """Token ids that end a reply: the template's end-of-turn and the model's end-of-text."""
        ids = {self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|im_end|>"),
               self.tokenizer.convert_tokens_to_ids("<|endoftext|>")}
        configured = self.model.generation_config.eos_token_id
        ids |= set(configured) if isinstance(configured, list) else {configured}
        return {i for i in ids if isinstance(i, int) and i >= 0 and i != self.tokenizer.unk_token_id}


def load_engine(settings: Settings) -> Engine:
    """A new engine (loads the model). Most callers want `get_engine`, which loads once per process."""
    prompt = get_prompt(settings.prompt_version)
    return Engine(load_model(settings), settings, prompt)


@cache
def get_engine(settings: Settings) -> Engine:
    """The process-wide engine for these settings, loaded on first call."""
    return load_engine(settings)
