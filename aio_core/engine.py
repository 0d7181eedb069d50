"""The engine: one loaded model (a backend) serving both roles, the sentiment analyst and the chat assistant.

`get_engine(settings)` is the one place the process-wide instance is created and cached; the CLI, the workflows and
the dashboard all receive it from there (a model that failed to load is remembered too, so a page does not retry a
slow load on every rerun; `retry=True` tries again). The engine exposes what callers need (name, profile,
description, fingerprint, the tokenizer for building prompts) and never the model's torch parts: those stay in
`aio_core/backends/`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from aio_core.backends import Backend, load_backend
from aio_core.errors import UserError
from aio_core.profiles import ModelProfile
from aio_core.prompts import PromptVersion, get_prompt
from aio_core.settings import Settings
from aio_core.templating import Tokenizer


@dataclass
class Engine:
    backend: Backend
    settings: Settings
    prompt: PromptVersion
    # Per (prompt version, language): the prepared classifier prompt, filled on first use (see classify.py).
    prepared: dict[tuple[str, str], object] = field(default_factory=dict)
    preparing: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def profile(self) -> ModelProfile:
        return self.backend.profile

    @property
    def tokenizer(self) -> Tokenizer:
        return self.backend.tokenizer

    @property
    def is_random(self) -> bool:
        return self.backend.is_random

    @property
    def fingerprint(self) -> str:
        return self.backend.fingerprint

    @property
    def description(self) -> str:
        return self.backend.description


def load_engine(settings: Settings) -> Engine:
    """A new engine (loads the model). Most callers want `get_engine`, which loads once per process."""
    prompt = get_prompt(settings.prompt_version)
    return Engine(load_backend(settings), settings, prompt)


_ENGINES: dict[Settings, Engine | UserError] = {}
_LOADING = threading.Lock()


def get_engine(settings: Settings, *, retry: bool = False) -> Engine:
    """The process-wide engine for these settings, loaded on first call; a load failure is raised again (from
    memory) until `retry` is asked for."""
    with _LOADING:
        found = _ENGINES.get(settings)
        if found is None or (retry and isinstance(found, UserError)):
            try:
                found = load_engine(settings)
            except UserError as error:
                found = error
            _ENGINES[settings] = found
    if isinstance(found, UserError):
        raise found
    return found


def loaded_engine(settings: Settings) -> Engine | None:
    """The engine if this process has already loaded it, without loading it."""
    found = _ENGINES.get(settings)
    return found if isinstance(found, Engine) else None
