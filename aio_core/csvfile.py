"""Users' CSV files in and out: detect the encoding, check the shape, stream the rows; write results safely.

`inspect_csv` reads the whole file once, streaming, before anything is stored: it finds the encoding (UTF-8, UTF-8
with BOM, UTF-16 with BOM, else GB18030, the superset of GBK), the delimiter, the header, the number of rows and the
sha256 of the bytes, and refuses the file with one sentence (line numbers included) when it cannot be read whole.
Written cells that a spreadsheet would run as a formula are neutralised (OWASP "CSV injection"); the store keeps the
text verbatim.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aio_core.errors import UserError
from aio_core.settings import MAX_TEXT_CHARS

# A 100,000-character message is a normal cell here; a longer cell is refused (it only cost memory: one 10 MB cell
# took the server from 0.75 to 2.7 GB), and so is a file with more columns than anyone exports.
csv.field_size_limit(MAX_TEXT_CHARS)
MAX_COLUMNS = 1000
_CHUNK = 1 << 20
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class CsvInfo:
    path: Path
    name: str  # the name the user knows the file by (an upload's original name)
    encoding: str
    delimiter: str
    header: tuple[str, ...]
    rows: int  # data rows, header excluded, blank lines not counted
    sha256: str
    size: int


def _detect_encoding(path: Path, name: str) -> tuple[str, str]:
    """(encoding, sha256) after checking that the whole file decodes with it."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    if not head:
        raise UserError(f"{name} is empty; export the data again with a header row and at least one row.")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    elif head.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    else:
        if b"\x00" in head:
            raise UserError(f"{name} looks like a binary file, not a CSV; export the data as CSV (UTF-8) and "
                            "try again.")
        candidates = ["utf-8", "gb18030"]
    failures = []
    for encoding in candidates:
        decoder = codecs.getincrementaldecoder(encoding)()
        digest = hashlib.sha256()
        offset = 0
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
                    text = decoder.decode(chunk)
                    if "\x00" in text:
                        raise UserError(f"{name} contains NUL characters, so it is not a text CSV; export the "
                                        "data as CSV (UTF-8) and try again.")
                    offset += len(chunk)
                decoder.decode(b"", final=True)
            return encoding, digest.hexdigest()
        except UnicodeDecodeError as exc:
            failures.append(f"{encoding} (byte {offset + exc.start})")
    raise UserError(f"{name} is not readable as {' or '.join(failures)}; save it as 'CSV UTF-8' and try again.")


def _pick_delimiter(first_line: str) -> str:
    """The most frequent of , ; tab | in the header line (Excel writes ; in some locales, tab in 'Unicode text')."""
    counts = {d: first_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _open_text(path: Path, encoding: str) -> io.TextIOWrapper:
    return path.open("r", encoding=encoding, newline="")


def inspect_csv(path: Path | str, name: str | None = None, *, max_reported: int = 10) -> CsvInfo:
    """Check the whole file and describe it; raises UserError naming the problem and the fix."""
    path = Path(path)
    name = name or path.name
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UserError(f"Cannot read {name}: {exc.strerror}; check the path.") from None
    encoding, sha256 = _detect_encoding(path, name)
    with _open_text(path, encoding) as handle:
        delimiter = _pick_delimiter(handle.readline(MAX_TEXT_CHARS))  # the first line's start is enough to tell
    rows, ragged = 0, []
    with _open_text(path, encoding) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            header = tuple(cell.strip() for cell in next(reader))
            if len(header) > MAX_COLUMNS:
                raise UserError(f"{name} has {len(header):,} columns; at most {MAX_COLUMNS:,} are read, so keep "
                                "the columns you need (the text, its author and time) and export it again.")
            for record in reader:
                if not record:
                    continue  # a blank line holds no data
                rows += 1
                if len(record) != len(header):
                    ragged.append((reader.line_num, len(record)))
        except StopIteration:
            raise UserError(f"{name} is empty; export the data again with a header row.") from None
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise UserError(f"{name}, line {reader.line_num}: a cell is longer than {MAX_TEXT_CHARS:,} "
                                "characters, the longest text screened; shorten it or leave that row out, and "
                                "try again. Nothing was stored.") from None
            raise UserError(f"{name} is not a well-formed CSV near line {reader.line_num} ({exc}); "
                            "check that quotes are closed and export it again.") from None
    duplicates = sorted(c for c, n in Counter(header).items() if n > 1)
    if duplicates:
        raise UserError(f"{name} has the column name(s) {', '.join(map(repr, duplicates))} more than once; "
                        "rename them so each column is unique.")
    if ragged:
        lines = ", ".join(str(line) for line, _ in ragged[:max_reported]) + (" ..." if len(ragged) > max_reported
                                                                              else "")
        raise UserError(f"{name}: {len(ragged)} row(s) do not have the header's {len(header)} fields (lines "
                        f"{lines}; line {ragged[0][0]} has {ragged[0][1]}); fix them, usually an unquoted "
                        "comma or quote in a text, and try again. Nothing was stored.")
    if rows == 0:
        raise UserError(f"{name} has a header but no data rows; nothing to screen.")
    return CsvInfo(path, name, encoding, delimiter, header, rows, sha256, size)


def iter_rows(info: CsvInfo) -> Iterator[tuple[int, int, dict[str, str]]]:
    """(row number from 1, line number, {column: value}) for every data row, streamed."""
    with _open_text(info.path, info.encoding) as handle:
        reader = csv.reader(handle, delimiter=info.delimiter)
        next(reader)
        number = 0
        for record in reader:
            if record:
                number += 1
                yield number, reader.line_num, dict(zip(info.header, record, strict=True))


def neutralise(cell: object) -> str:
    """A cell a spreadsheet will show as text: formulas (= + - @ tab CR at the start) get a leading quote."""
    text = "" if cell is None else str(cell)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_bytes(header: Iterable[str], rows: Iterable[Iterable[object]]) -> bytes:
    """The same formula-safe UTF-8-with-BOM CSV as `write_csv`, in memory (for a download button)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([neutralise(c) for c in header])
    writer.writerows([neutralise(c) for c in row] for row in rows)
    return buffer.getvalue().encode("utf-8-sig")


def write_csv(path: Path | str, header: Iterable[str], rows: Iterable[Iterable[object]]) -> int:
    """Write a formula-safe UTF-8 (with BOM, so Excel reads Chinese) CSV atomically: all of it or nothing."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise UserError(f"Cannot write {path} ({exc.strerror}); choose a writable folder for the output.") from None
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([neutralise(c) for c in header])
            for row in rows:
                writer.writerow([neutralise(c) for c in row])
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        Path(temp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise UserError(f"Writing {path} failed ({exc.strerror}); free some disk space or choose another "
                            "folder. No partial file was left.") from None
        raise
    return count
