"""Reading users' CSV files (encodings, shapes, hostile cells) and writing formula-safe results."""

from __future__ import annotations

import csv
import io

import pytest

from aio_core.csvfile import inspect_csv, iter_rows, neutralise, write_csv
from aio_core.errors import UserError

ROWS = [["name", "comment"], ["amy", "今天很开心，谢谢老师！"], ["bo", 'multi\nline, with "quotes"'], ["cy", "普通"]]


def write(path, rows, encoding="utf-8", delimiter=","):
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16"])
def test_common_encodings_read_back_exactly(tmp_path, encoding):
    info = inspect_csv(write(tmp_path / "c.csv", ROWS, encoding))
    assert info.header == ("name", "comment") and info.rows == 3
    assert [row["comment"] for _, _, row in iter_rows(info)] == [r[1] for r in ROWS[1:]]


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_excel_style_delimiters_are_recognised(tmp_path, delimiter):
    info = inspect_csv(write(tmp_path / "c.csv", ROWS, delimiter=delimiter))
    assert info.delimiter == delimiter and info.header == ("name", "comment")


def test_line_numbers_account_for_quoted_newlines(tmp_path):
    info = inspect_csv(write(tmp_path / "c.csv", ROWS))
    assert [(n, line) for n, line, _ in iter_rows(info)] == [(1, 2), (2, 4), (3, 5)]


@pytest.mark.parametrize("content, words", [
    (b"", "is empty"),
    (b"name,comment\n", "no data rows"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    (b"a,b\n1,2\n3,4,5\n6\n", "lines 3, 4"),
    (b"text,text\nx,y\n", "more than once"),
    (b"text\n\xff\xfe\xfa broken \x81\n", "save it as 'CSV UTF-8'"),
])
def test_bad_files_are_refused_with_one_sentence(tmp_path, content, words):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(UserError) as error:
        inspect_csv(path)
    assert words in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("cell", ['=HYPERLINK("http://x","y")', "+1+1", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_formula_cells_are_neutralised(cell):
    assert neutralise(cell) == "'" + cell


def test_results_round_trip_and_are_written_whole(tmp_path):
    rows = [["1", 'quote " and, comma'], ["2", "new\nline"], ["3", "=1+1"]]
    out = tmp_path / "out.csv"
    assert write_csv(out, ["id", "text"], rows) == 3
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")  # BOM: Excel opens Chinese text correctly
    info = inspect_csv(out)
    assert [r["text"] for _, _, r in iter_rows(info)] == ['quote " and, comma', "new\nline", "'=1+1"]
    assert not list(tmp_path.glob(".*part"))


def test_a_failed_write_leaves_no_partial_file(tmp_path):
    def rows():
        yield ["1", "fine"]
        raise RuntimeError("the source broke half-way")

    with pytest.raises(RuntimeError):
        write_csv(tmp_path / "out.csv", ["id", "text"], rows())
    assert list(tmp_path.iterdir()) == []
