"""What a process serving the dashboard keeps running, in one place (`dashboard.py` calls `keep_up` on every page
view; each duty costs nothing when it is not due):

- screenings a previous run left unfinished carry on (the job worker thread, started once per process);
- notifications are sent (the sender thread, started again if it ever stopped; only with a channel set up);
- messages older than the admin's retention setting are deleted on the first view of each day, logged and compacted;
- upload copies a killed process left behind are deleted, at start and then hourly.

The background fit of missing heads starts where the model is loaded (`autofit.start`), since it needs the model.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from datetime import date
from pathlib import Path

from sqlalchemy import Engine as Database

from aio_core.settings import Settings
from aio_core.workflows.jobs import start_worker
from aio_core.workflows.notify import start_sender
from aio_core.workflows.privacy import apply_retention
from db.session import reading
from db.users import get_setting

UPLOAD_PREFIX = "aio-upload-"
STALE_UPLOAD = 3600  # seconds: no preview or submit holds its copy this long; an older one was left by a crash
_JOBS_RESUMED: set[str] = set()
_RETENTION_DAY: dict[str, date] = {}
_SWEPT: dict[str, float] = {}


def keep_up(settings: Settings, db: Database) -> None:
    """Every duty above that is due now."""
    if settings.db_url not in _JOBS_RESUMED:
        _JOBS_RESUMED.add(settings.db_url)
        start_worker(settings, db)
    start_sender(settings, db)
    daily_retention(settings, db)
    sweep_uploads(settings)


def daily_retention(settings: Settings, db: Database) -> None:
    """Delete messages older than the admin's retention setting, on the first call of each day (so at start and
    daily), logged in the audit trail, the files compacted so no copy of them remains."""
    today = date.today()
    if _RETENTION_DAY.get(settings.db_url) == today:
        return
    _RETENTION_DAY[settings.db_url] = today
    with reading(db) as session:
        days = int(get_setting(session, "retention_days"))
    if days > 0:
        apply_retention(db, days, by="retention")


def uploads_dir(settings: Settings) -> Path:
    """Where an upload is copied while one operation reads it: the data folder, owner-only."""
    folder = Path(settings.data_dir) / "uploads"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def sweep_uploads(settings: Settings) -> None:
    """Delete upload copies older than an hour that a killed process left behind (here, and where versions before
    this one kept them: the system's temporary folder). At start, then hourly."""
    folder = str(uploads_dir(settings))
    if time.monotonic() - _SWEPT.get(folder, -STALE_UPLOAD) < STALE_UPLOAD:
        return
    _SWEPT[folder] = time.monotonic()
    for place in (Path(folder), Path(tempfile.gettempdir())):
        for file in place.glob(f"{UPLOAD_PREFIX}*.csv"):
            with contextlib.suppress(OSError):  # another process's file, or gone meanwhile
                if time.time() - file.stat().st_mtime > STALE_UPLOAD and file.stat().st_uid == os.getuid():
                    file.unlink()
