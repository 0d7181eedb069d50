"""The engine: one loaded model (a backend) serving both roles, the sentiment analyst and the chat assistant.

`get_engine(settings)` is the one place the process-wide instance is created and cached; the CLI, the workflows and
the dashboard all receive it from there (a model that failed to load is remembered too, so a page does not retry a
slow load on every rerun; `retry=True` tries again). The engine exposes what callers need (name, profile,
description, fingerprint, the tokenizer for building prompts) and never the model's torch parts: those stay in
`aio_core/backends/`.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field

from aio_core.backends import Backend, load_backend
from aio_core.errors import UserError
from aio_core.heads import Head, find_head
from aio_core.judge import ReplyJudge, find_judge
from aio_core.profiles import ModelProfile
from aio_core.prompts import ASSISTANT_VERSION, PromptVersion, get_prompt
from aio_core.risk_head import RiskHead, find_risk_head
from aio_core.settings import Settings
from aio_core.situation import SituationHead, find_situation_head
from aio_core.templating import Tokenizer


@dataclass
class Engine:
    backend: Backend
    settings: Settings
    prompt: PromptVersion
    head: Head | None = None  # the learned label head for these weights and this prompt, when there is one
    head_note: str = ""  # why no head is used, in one sentence
    risk_head: RiskHead | None = None  # the learned risk head for these weights and this prompt's pass
    risk_note: str = ""  # why no risk head is used, in one sentence
    situation_head: SituationHead | None = None  # what a message is about, for the reply's opening
    judge: ReplyJudge | None = None  # the reply judge for these weights and the assistant prompt
    # Per (prompt version, language): the prepared classifier prompt, filled on first use (see classify.py).
    prepared: dict[tuple[str, str], object] = field(default_factory=dict)
    preparing: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def title(self) -> str:
        return self.backend.title

    @property
    def source(self) -> str:
        return self.backend.source

    @property
    def runtime(self) -> dict[str, object]:
        """dtype, device, threads, load seconds (see `Backend.runtime`)."""
        return self.backend.runtime

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

    @property
    def labeller(self) -> str:
        """How labels are made, for status lines: the learned head or the zero-shot readout, and why."""
        if self.head:
            return f"learned head {self.head.head_id} on prompt {self.prompt.version}"
        return f"zero-shot readout of prompt {self.prompt.version}" + (f" ({self.head_note})" if self.head_note
                                                                       else "")

    @property
    def risk_reader(self) -> str:
        """How risk is read, for status lines."""
        if self.settings.risk == "off":
            return "risk not assessed (AIO_RISK=off)"
        if self.risk_head:
            return f"risk head {self.risk_head.head_id} + phrase floor"
        return "risk phrase list only" + (f" ({self.risk_note})" if self.risk_note else "")

    @property
    def reply_reader(self) -> str:
        """How replies are made, for status lines."""
        if self.settings.reply == "free":
            return "free generation, unguarded (AIO_REPLY=free)"
        situation = "situation head" if self.situation_head else "no situation head (general openings)"
        if self.settings.reply == "library":
            return f"reply library only; {situation}"
        judge = "reply judge" if self.judge else "no reply judge"
        return f"library opening + guarded sentence; {situation}; {judge}"

    def with_head(self, head: Head | None) -> Engine:
        """The same loaded model with another head (or none); prepared prompts are shared."""
        return dataclasses.replace(self, head=head, head_note="" if head else "no head")

    def with_risk_head(self, head: RiskHead | None) -> Engine:
        """The same loaded model with another risk head (or none)."""
        return dataclasses.replace(self, risk_head=head, risk_note="" if head else "no risk head")


def pick_head(backend: Backend, settings: Settings, prompt: PromptVersion) -> tuple[Head | None, str]:
    """The head fitted on exactly these weights and this prompt, if any, and otherwise why none is used."""
    if settings.head == "off":
        return None, "AIO_HEAD=off"
    head = find_head(settings.heads_dir, backend.fingerprint, prompt.version)
    if head is None:
        return None, "no head fitted for these weights and prompt; see fit-head"
    if not backend.reads_hidden_states:
        return None, "this backend gives no hidden states, so the fitted head cannot be used"
    return head, ""


def pick_risk_head(backend: Backend, settings: Settings, prompt: PromptVersion) -> tuple[RiskHead | None, str]:
    """The risk head fitted on exactly these weights and this prompt's pass, if any, and otherwise why none."""
    if settings.risk != "auto":
        return None, f"AIO_RISK={settings.risk}"
    if not backend.reads_hidden_states:
        return None, "this backend gives no hidden states, so only the phrase list reads risk"
    head = find_risk_head(settings.heads_dir, backend.fingerprint, prompt.version)
    if head is None:
        return None, "no risk head fitted for these weights and prompt; see fit-head --risk"
    return head, ""


def _heads(backend: Backend, settings: Settings, prompt: PromptVersion) -> dict[str, object]:
    """Every learned reader fitted on exactly these weights and this prompt, and why one is not used."""
    head, note = pick_head(backend, settings, prompt)
    risk_head, risk_note = pick_risk_head(backend, settings, prompt)
    situation_head = judge = None
    if backend.reads_hidden_states:  # both read hidden states; without them replies use the general openings
        situation_head = find_situation_head(settings.heads_dir, backend.fingerprint, prompt.version)
        judge = find_judge(settings.heads_dir, backend.fingerprint, ASSISTANT_VERSION)
    return {"head": head, "head_note": note, "risk_head": risk_head, "risk_note": risk_note,
            "situation_head": situation_head, "judge": judge}


def load_engine(settings: Settings) -> Engine:
    """A new engine (loads the model). Most callers want `get_engine`, which loads once per process."""
    prompt = get_prompt(settings.prompt_version)
    backend = load_backend(settings)
    return Engine(backend=backend, settings=settings, prompt=prompt, **_heads(backend, settings, prompt))


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


def refresh_heads(settings: Settings) -> Engine | None:
    """Look again for the heads of the loaded engine (a fit has just saved one): every later label, risk read and
    reply of this process uses them. Returns the refreshed engine, or None when none is loaded."""
    with _LOADING:
        found = _ENGINES.get(settings)
        if not isinstance(found, Engine):
            return None
        found = dataclasses.replace(found, **_heads(found.backend, settings, found.prompt))
        _ENGINES[settings] = found
        return found


def loaded_engine(settings: Settings) -> Engine | None:
    """The engine if this process has already loaded it, without loading it."""
    found = _ENGINES.get(settings)
    return found if isinstance(found, Engine) else None
