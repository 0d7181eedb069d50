"""Where the model runs, behind one interface (`base.Backend`): the in-process transformers model by default,
or a model behind an OpenAI-compatible server (`AIO_MODEL=openai+http://HOST:PORT/v1`, see `server`).

`load_backend(settings)` is the one place that picks a backend from `AIO_MODEL`. This package is the only part of
the product that imports torch; a new backend implements `base.Backend` and gets a branch here.
"""

from __future__ import annotations

from aio_core.backends.base import Backend, Candidate, Prefix, Readout, Scores
from aio_core.settings import Settings

__all__ = ["Backend", "Candidate", "Prefix", "Readout", "Scores", "load_backend", "missing_model"]


def load_backend(settings: Settings) -> Backend:
    """The backend `settings.model` names, loaded; raises a UserError sentence naming AIO_MODEL if it cannot be."""
    from aio_core.backends.server import ServerBackend, is_server

    if is_server(settings.model):
        return ServerBackend(settings)
    from aio_core.backends.inprocess import load_inprocess

    return load_inprocess(settings)


def missing_model(settings: Settings) -> str | None:
    """Without loading anything: the sentence saying `AIO_MODEL` names a file or folder that is not there (or not a
    model), or None. A hub id or a server is only known to work once it is loaded."""
    from aio_core.backends.server import is_server

    if is_server(settings.model):
        return None
    from aio_core.backends.loading import ModelLoadError, _source_of

    try:
        _source_of(settings.model.strip())
    except ModelLoadError as error:
        return str(error)
    return None
