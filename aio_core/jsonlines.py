"""JSON Lines files (conversations, labelled replies, labelled candidates): read once, each line's number kept for
the one sentence that names a bad line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from aio_core.errors import UserError


def json_lines(path: Path | str, what: str) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) for every non-blank line; a file that cannot be read, or a line that is not JSON,
    is one sentence naming the file, the line and `what` each line must be."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} cannot be read as UTF-8 JSON Lines ({exc}).") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError:
            raise UserError(f"{path}, line {number}: not JSON; each line must be {what}.") from None
