"""Good readers from the first start: the heads these weights lack are fitted from the shipped sets in the background.

When the dashboard has loaded the model (`AIO_AUTOFIT=on`, the default), every learned reader that is missing for
these weights and this prompt is fitted from the set the repository ships, one after the other: the risk head first
(`aio_core/data/risk/`, it decides who is in danger), then the label head (`aio_core/data/sentiment/`), then the
situation head (`aio_core/data/situations/`). Each is used by the process as soon as it is saved; until then labels
are zero-shot and risk is read by the phrase list, and the pages say so.

- One at a time per data folder: a lock file names the process that fits; a lock whose process is gone (same machine)
  or that has not moved for 15 minutes (another machine) is taken over.
- Resumable: the model's reading of the rows is kept after every 256 texts (`head_fit.features`), so a fit
  stopped by a restart carries on where it was at the next start.
- Never over someone's own head: a head that appears while the job runs (`fit-head` with your own data) is kept.
- Progress, the stage and the outcome are in a small JSON file beside the heads, which Overview and Admin read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aio_core.backends.base import background_work
from aio_core.engine import Engine, refresh_heads
from aio_core.head_fit import read_labelled
from aio_core.heads import shipped_files as shipped_label_files
from aio_core.risk_fit import read_risk_rows
from aio_core.risk_fit import shipped_files as shipped_risk_files
from aio_core.settings import Settings
from aio_core.situation import SHIPPED as SITUATIONS_FOLDER
from aio_core.situation import read_situation_rows
from aio_core.workflows import USER_ERRORS
from aio_core.workflows.learning import fit_label_head, fit_risk_head_from, fit_situation_head_from

log = logging.getLogger(__name__)

STAGES = ("risk", "label", "situation")  # the order they are fitted in: who is in danger first
STALE = 15 * 60  # seconds without progress after which another machine's lock is taken over
HOST = socket.gethostname()
_THREADS: dict[str, threading.Thread] = {}
_FAILED: set[tuple[str, str, str]] = set()  # (data folder, weights, prompt) whose fit failed in this process
_GUARD = threading.Lock()


@dataclass
class FitStatus:
    """What the background fit is doing for one set of weights and prompt (the file Overview and Admin read)."""

    fingerprint: str
    prompt_version: str
    state: str = "waiting"  # waiting | running | done | failed
    stages: list[str] = field(default_factory=list)  # the heads this job fits, in order
    stage: str = ""  # the one being fitted now
    finished: list[str] = field(default_factory=list)
    done: int = 0  # texts of this stage read so far (those read before a restart included)
    total: int = 0
    started_at: str = ""
    updated_at: str = ""
    error: str = ""

    @property
    def share(self) -> float:
        """How far the whole job is, 0..1 (each stage weighs the same)."""
        if not self.stages:
            return 1.0
        inside = self.done / self.total if self.total else 0.0
        return min(1.0, (len(self.finished) + (inside if self.state == "running" else 0.0)) / len(self.stages))

    @property
    def active(self) -> bool:
        return self.state in ("waiting", "running")


def status_path(settings: Settings, fingerprint: str, prompt_version: str) -> Path:
    return settings.heads_dir / f"{fingerprint}__{prompt_version}__autofit.json"


def read_status(settings: Settings, fingerprint: str, prompt_version: str) -> FitStatus | None:
    """The last status written for these weights and prompt, or None when no background fit ever ran for them. A
    "running" status whose process is gone is reported as waiting (it resumes at the next start)."""
    path = status_path(settings, fingerprint, prompt_version)
    try:
        status = FitStatus(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if status.state == "running" and _lock_owner_gone(settings):
        status.state = "waiting"
    return status


def shipped_sets() -> dict[str, list[Path]]:
    """The fitting set of each head, as the repository ships them (each folder's README names sources and licences)."""
    return {"risk": shipped_risk_files(), "label": shipped_label_files(),
            "situation": sorted(SITUATIONS_FOLDER.glob("*.csv"))}


def missing(engine: Engine) -> list[str]:
    """The heads this engine would use but has none of, in the order they would be fitted."""
    settings = engine.settings
    if not engine.backend.reads_hidden_states:
        return []
    wanted = {"risk": settings.risk == "auto" and engine.risk_head is None,
              "label": settings.head == "auto" and engine.head is None,
              "situation": engine.situation_head is None}
    return [stage for stage in STAGES if wanted[stage]]


def start(engine: Engine, sets: dict[str, list[Path]] | None = None) -> bool:
    """Fit what `engine` lacks in a background thread of this process, unless that is off, nothing is missing, or a
    fit already runs here or in another process on the same data folder. True when a thread was started."""
    settings = engine.settings
    if settings.autofit != "on" or not missing(engine) or _failure_key(engine) in _FAILED:
        return False  # a failed fit is not tried again on every page view: its error stays shown until a restart
    key = _key(settings)
    with _GUARD:
        thread = _THREADS.get(key)
        if thread is not None and thread.is_alive():
            return False
        thread = threading.Thread(target=_background, args=(engine, sets), name="aio-autofit", daemon=True)
        _THREADS[key] = thread
        thread.start()
    return True


def _key(settings: Settings) -> str:
    return str(settings.heads_dir.resolve())


def _failure_key(engine: Engine) -> tuple[str, str, str]:
    return _key(engine.settings), engine.fingerprint, engine.prompt.version


def _background(engine: Engine, sets: dict[str, list[Path]] | None) -> None:
    try:
        run(engine, sets=sets)
    except Exception:  # a thread's error would otherwise vanish; the status file already says it failed
        log.exception("the background fit failed")


def wait(settings: Settings, timeout: float | None = None) -> bool:
    """Wait for this process's background fit to end (tests, `fit-head --missing`); True when none is running."""
    thread = _THREADS.get(_key(settings))
    if thread is not None:
        thread.join(timeout)
        return not thread.is_alive()
    return True


def run(engine: Engine, *, sets: dict[str, list[Path]] | None = None,
        progress: Callable[[FitStatus], None] | None = None) -> FitStatus:
    """Fit every missing head now, in this thread (what the background job runs), each from its set in `sets` (the
    shipped sets by default). Returns the final status; a fit already running elsewhere on the same data folder is
    left alone (status "waiting")."""
    settings = engine.settings
    stages = missing(engine)
    status = FitStatus(fingerprint=engine.fingerprint, prompt_version=engine.prompt.version, stages=stages,
                       started_at=_now())
    if not stages:
        status.state = "done"
        return status
    with _lock(settings) as held:
        if not held:
            return status
        sets = sets or shipped_sets()
        fits = {"risk": (fit_risk_head_from, lambda: len(read_risk_rows(sets["risk"]))),
                "label": (lambda files, **kw: fit_label_head(files, fitting_set="shipped", **kw),
                          lambda: len(read_labelled(sets["label"]))),
                "situation": (fit_situation_head_from, lambda: len(read_situation_rows(sets["situation"])))}
        status.state = "running"
        last = 0.0
        try:
            for stage in stages:
                fit, count = fits[stage]
                status.stage, status.done, status.total = stage, 0, count()
                _write(settings, status)

                def tick(done: int) -> None:
                    nonlocal last
                    status.done = done
                    if time.monotonic() - last >= 1.0:  # the file at most once a second
                        last = time.monotonic()
                        _write(settings, status)
                    if progress:
                        progress(status)

                with background_work():
                    fit(sets[stage], engine=engine, progress=tick, replace=False)
                status.finished.append(stage)
                status.done = status.total
                engine = refresh_heads(settings) or engine
                _write(settings, status)
            status.state, status.stage = "done", ""
        except USER_ERRORS as error:
            status.state, status.error = "failed", str(error)
            _FAILED.add(_failure_key(engine))
        except Exception as error:  # a failed fit is reported, never silent
            status.state, status.error = "failed", f"{type(error).__name__}: {error}"
            _FAILED.add(_failure_key(engine))
            raise
        finally:
            _write(settings, status)
    return status


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write(settings: Settings, status: FitStatus) -> None:
    status.updated_at = _now()
    path = status_path(settings, status.fingerprint, status.prompt_version)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(asdict(status)))
    partial.replace(path)
    with contextlib.suppress(OSError):
        os.utime(_lock_path(settings))  # the lock moves with the progress: a live fit is never taken over


def _lock_path(settings: Settings) -> Path:
    return settings.heads_dir / "autofit.lock"


def _lock_owner_gone(settings: Settings) -> bool:
    path = _lock_path(settings)
    try:
        owner = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return True
    if owner.get("host") == HOST:
        try:
            os.kill(int(owner["pid"]), 0)
        except (OSError, ValueError, KeyError):
            return True
        return False
    return age > STALE


@contextlib.contextmanager
def _lock(settings: Settings) -> Iterator[bool]:
    """Hold the data folder's fit lock (yields False when another live process holds it)."""
    path = _lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            if not _lock_owner_gone(settings):
                yield False
                return
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps({"pid": os.getpid(), "host": HOST, "since": _now()}))
        try:
            yield True
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
        return
    yield False
