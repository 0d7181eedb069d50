"""Where the model runs, behind one interface (`base.Backend`): the in-process transformers model by default,
or a model behind an OpenAI-compatible server (`AIO_MODEL=openai+http://HOST:PORT/v1`, see `server`).

Backends are registered by the scheme the model setting starts with (the way `llm` registers its models): the longest
registered scheme that `AIO_MODEL` starts with picks the backend, and "" (anything else: a hub id, a folder, a
.gguf file, `tiny-random`) is the in-process model. Each entry names its module and functions, imported only when
that backend is used, so this package stays the only part of the product that imports torch, and only when a model
is loaded. A new backend implements `base.Backend` and adds one `register` line below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from aio_core.backends.base import Backend, Candidate, Prefix, Readout, Scores
from aio_core.settings import Settings

__all__ = ["Backend", "Candidate", "Prefix", "Readout", "Scores", "load_backend", "missing_model", "register"]


@dataclass(frozen=True)
class Registered:
    scheme: str  # what AIO_MODEL starts with ("" = anything no other scheme claims)
    load: str  # "module:function", Settings -> Backend (raises a UserError sentence naming AIO_MODEL)
    check: str | None = None  # "module:function", Settings -> the sentence saying the setting is wrong, or None


def _function(spec: str) -> Callable:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


BACKENDS: dict[str, Registered] = {}


def register(scheme: str, load: str, check: str | None = None) -> None:
    BACKENDS[scheme.lower()] = Registered(scheme.lower(), load, check)


register("openai+", "aio_core.backends.server:load_server")
register("", "aio_core.backends.inprocess:load_inprocess", check="aio_core.backends.loading:check_model")


def backend_for(model: str) -> Registered:
    """The registered backend whose scheme `model` starts with (the longest one)."""
    name = model.strip().lower()
    return BACKENDS[max((s for s in BACKENDS if name.startswith(s)), key=len)]


def load_backend(settings: Settings) -> Backend:
    """The backend `settings.model` names, loaded; raises a UserError sentence naming AIO_MODEL if it cannot be."""
    return _function(backend_for(settings.model).load)(settings)


def missing_model(settings: Settings) -> str | None:
    """Without loading anything: the sentence saying `AIO_MODEL` names a file or folder that is not there (or not a
    model), or None. A hub id or a server is only known to work once it is loaded."""
    entry = backend_for(settings.model)
    return _function(entry.check)(settings) if entry.check else None
