"""Members: the files people exchange: CSV and .xlsx reading (encodings, headings and their
aliases, bounds on cells, columns and unpacked size) and writing."""

from __future__ import annotations

import codecs
import csv
import datetime as _dt
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence

from core.domain.members.validate import (
    CSV_CELL_CHARS_MAX,
    CSV_LINE_CHARS_MAX,
    CUSTOM_JSON_CHARS_MAX,
    IMPORT_COLUMNS_MAX,
    XLSX_ENTRIES_MAX,
    XLSX_UNPACKED_BYTES_MAX,
    MemberError,
    MemberErrorCode,
)
from core.domain.textlines import BoundedLines
from core.rules import loads_bounded

log = logging.getLogger("mms.members")


EXPORT_COLUMNS = ("member_id", "name", "phone", "id_no", "gender", "birthday", "address",
                  "photo", "source", "prefs", "tags", "custom", "referrer_id", "home_store_id",
                  "status", "created_s", "updated_s")

EMPTY_ROW = {"name": "", "gender": "U", "birthday": "", "address": "", "photo": "", "source": "store",
          "prefs": [], "custom": {}, "tags": [], "referrer_id": 0, "home_store_id": 0}


# A text cell that starts like a formula (CSV or formula injection): Excel runs
# "=HYPERLINK(...)" or "=cmd|..." in a CSV it opens, and openpyxl writes such a string to
# an .xlsx as a formula. A member's name may be one (40 characters are enough), so every
# cell of a file people open in Excel is written with a leading apostrophe (Excel shows
# the text; in an .xlsx the apostrophe shows), and an import takes it off again, so an
# exported or an errors file imports as it is (excel_text, from_excel_text: the one place).
_FORMULA_START = frozenset("=+-@\t\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def _formula_like(v: str) -> bool:
    """v starts like a formula once its leading apostrophes are set aside (so that
    "'=1", itself quoted once more, comes back as it was), and is not a plain number."""
    body = v.lstrip("'")
    return body[:1] in _FORMULA_START and not _PLAIN_NUMBER.fullmatch(body)


def excel_text(v: object) -> object:
    """v as written to a file for Excel: a string that starts like a formula (and is not
    a plain number such as -5 or +8613800000001) gets a leading apostrophe."""
    if isinstance(v, str) and v and _formula_like(v):
        return "'" + v
    return v


def from_excel_text(v: object) -> object:
    """excel_text's inverse, for a cell read from an import file."""
    if isinstance(v, str) and v[:1] == "'" and _formula_like(v):
        return v[1:]
    return v


def cell(v: object) -> object:
    """A member field as an export's cell (lists joined, JSON objects as text; excel_text)."""
    if isinstance(v, list):
        v = ";".join(v)
    elif isinstance(v, dict):
        v = json.dumps(v, ensure_ascii=False) if v else ""
    return excel_text(v)


def row_key(file_id: str, line: int) -> bytes:
    return hashlib.sha256(f"mms-import-row:{file_id}:{line}".encode()).digest()[:16]


# --- readers -------------------------------------------------------------------------------

# Column headings accepted in import files (case-insensitive), English and Chinese.
COLUMN_ALIASES = {
    "name": "name", "姓名": "name", "phone": "phone", "mobile": "phone", "手机": "phone",
    "手机号": "phone", "电话": "phone", "id_no": "id_no", "证件号": "id_no", "身份证号": "id_no",
    "gender": "gender", "性别": "gender", "birthday": "birthday", "生日": "birthday",
    "address": "address", "地址": "address", "photo": "photo", "照片": "photo",
    "source": "source", "来源": "source", "prefs": "prefs", "偏好": "prefs", "爱好": "prefs",
    "tags": "tags", "标签": "tags", "referrer_id": "referrer_id", "推荐人": "referrer_id",
    "home_store_id": "home_store_id", "store_id": "home_store_id", "门店": "home_store_id",
    "custom": "custom",
    # The member an edited row updates (an exported file has it): `mms member import`
    # of an export updates those members instead of creating new ones.
    "member_id": "member_id", "会员号": "member_id", "会员编号": "member_id",
}
CUSTOM_PREFIX = "custom."
# Columns an import reads and ignores: the export's own (a member's status changes by
# `mms member freeze|unfreeze|cancel|restore`, its times by the server), and the two an
# errors file adds (ERRORS_COLUMNS), so that an exported or an errors file imports as it is.
EXPORT_ONLY_COLUMNS = ("status", "created_s", "updated_s")
ERRORS_COLUMNS = ("import_line", "import_error")
IGNORED_COLUMNS = frozenset(EXPORT_ONLY_COLUMNS + ERRORS_COLUMNS)


def _row_dict(header: list[str], values: Sequence[object]) -> dict | str:
    if len(values) > len(header) and any(v not in (None, "") for v in values[len(header):]):
        return f"{len(values)} cells, the header has {len(header)}"
    prof: dict = {}
    custom: dict = {}
    for h, v in zip(header, values, strict=False):
        if v is None or v == "":
            continue
        v = from_excel_text(v)
        if h.startswith(CUSTOM_PREFIX):
            custom[h[len(CUSTOM_PREFIX):]] = v if isinstance(v, str) else str(v)
        elif h == "custom":
            try:
                doc = (loads_bounded(v, "custom", chars_max=CUSTOM_JSON_CHARS_MAX, depth_max=1)
                       if isinstance(v, str) else {})
            except ValueError as e:
                return str(e)
            if not isinstance(doc, dict):
                return "custom is not a JSON object"
            custom.update(doc)
        elif h:
            prof[h] = v
    if custom:
        prof["custom"] = custom
    return prof


def _header(cells: Sequence[object]) -> list[str]:
    if len(cells) > IMPORT_COLUMNS_MAX:
        raise _file_invalid(f"the header has {len(cells)} columns, at most {IMPORT_COLUMNS_MAX}")
    out = []
    for c in cells:
        s = str(c or "").strip()
        if s.lower().startswith(CUSTOM_PREFIX):
            out.append(CUSTOM_PREFIX + s[len(CUSTOM_PREFIX):])
            continue
        if s.lower() in IGNORED_COLUMNS:
            out.append("")
            continue
        key = COLUMN_ALIASES.get(s.lower(), COLUMN_ALIASES.get(s))
        if key is None and s:
            raise MemberError(MemberErrorCode.INVALID, f"unknown column {s!r}")
        out.append(key or "")
    if "name" not in out:
        raise MemberError(MemberErrorCode.INVALID, "the header has no name column")
    return out


def _file_invalid(message: str) -> MemberError:
    return MemberError(MemberErrorCode.FILE_INVALID, message, "file")


def _encoding(path: str) -> str:
    """UTF-8 (with or without BOM) or, failing that, GB18030 (what Excel writes on a
    Chinese Windows); FILE_INVALID when the file is neither. The whole file is decoded
    here, before any row is imported, so a bad byte never stops an import midway."""
    for encoding, name in (("utf-8", "utf-8-sig"), ("gb18030", "gb18030")):
        dec = codecs.getincrementaldecoder(encoding)()
        offset = 0
        with open(path, "rb") as f:
            try:
                for block in iter(lambda: f.read(1 << 20), b""):
                    dec.decode(block)
                    offset += len(block)
                dec.decode(b"", final=True)
                return name
            except UnicodeDecodeError as e:
                bad = offset + max(0, e.start)
        if encoding == "gb18030":
            raise _file_invalid(f"the file is neither UTF-8 nor GB18030 text (byte {bad} "
                                "cannot be read in either); save the CSV as UTF-8")
    raise AssertionError("unreachable")


def _csv_rows(f) -> Iterator[tuple[int, list[str]]]:
    """(line where the row starts, cells) per row; FILE_INVALID on malformed CSV or a
    line past CSV_LINE_CHARS_MAX (never held whole: an upload of one huge line)."""
    lines = BoundedLines(f, CSV_LINE_CHARS_MAX)
    reader = csv.reader(lines)
    start = 1
    while True:
        try:
            values = next(reader, None)
        except csv.Error as e:
            why = (f"a cell is longer than {CSV_CELL_CHARS_MAX} characters"
                   if "field limit" in str(e) else "it is not well-formed CSV")
            raise _file_invalid(f"line {reader.line_num}: {why}") from None
        if values is None:
            return
        if lines.any_too_long(start, reader.line_num):
            raise _file_invalid(f"line {min(lines.too_long)}: a line is longer than "
                                f"{CSV_LINE_CHARS_MAX} characters")
        yield start, values
        start = reader.line_num + 1


def read_csv(path: str) -> Iterator[tuple[int, dict | str]]:
    """(line, profile) per data row; line is the file's line number where the row starts.
    The file is checked whole (encoding, CSV syntax) before the first row is given."""
    encoding = _encoding(path)
    with open(path, newline="", encoding=encoding) as f:
        for _ in _csv_rows(f):
            pass
    with open(path, newline="", encoding=encoding) as f:
        rows = _csv_rows(f)
        first = next(rows, None)
        header = _header(first[1] if first else [])
        for line, values in rows:
            if not any(v.strip() for v in values):
                continue
            yield line, _row_dict(header, values)


def _check_xlsx(path: str) -> None:
    """An .xlsx is a zip archive: refuse one that is not, or that would unpack past the
    bounds, before openpyxl reads it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise _file_invalid("the .xlsx file is not an Excel workbook (not a zip archive); "
                            "save it from Excel as .xlsx, or upload CSV") from None
    if len(infos) > XLSX_ENTRIES_MAX:
        raise _file_invalid(f"the .xlsx archive holds {len(infos)} parts, at most "
                            f"{XLSX_ENTRIES_MAX}")
    unpacked = sum(i.file_size for i in infos)
    if unpacked > XLSX_UNPACKED_BYTES_MAX:
        raise _file_invalid(f"the .xlsx file unpacks to {unpacked} bytes, at most "
                            f"{XLSX_UNPACKED_BYTES_MAX}; split it or upload CSV")


def read_xlsx(path: str) -> Iterator[tuple[int, dict | str]]:
    """(row number, profile) per data row of the first sheet."""
    import openpyxl

    _check_xlsx(path)
    damaged = "the .xlsx file is damaged or not a workbook openpyxl can read"
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except MemberError:
        raise
    except Exception:  # a hostile file can break the reader in any of its layers
        raise _file_invalid(damaged) from None
    try:
        if not wb.worksheets:
            raise _file_invalid("the workbook has no sheet")
        it = wb.worksheets[0].iter_rows(values_only=True)
        line = 1
        while True:
            try:
                values = next(it, None)
            except Exception:
                raise _file_invalid(f"row {line}: {damaged}") from None
            if values is None:
                if line == 1:
                    _header(())  # an empty sheet: no header, which _header refuses
                return
            if line == 1:
                header = _header(values)
            elif any(v not in (None, "") for v in values):
                cells = [v.isoformat()[:10] if isinstance(v, (_dt.date, _dt.datetime)) else v
                         for v in values]
                yield line, _row_dict(header, cells)
            line += 1
    finally:
        wb.close()


def raw_rows(path: str) -> Iterator[tuple[int, list[str]]]:
    """(line, cells as text) of every row of a .csv or .xlsx import file, the header
    (line 1) included, numbered as read_csv and read_xlsx number them: what an errors
    file copies of each refused row, so that it can be fixed and imported again."""
    if path.lower().endswith(".xlsx"):
        import openpyxl

        _check_xlsx(path)
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            for line, values in enumerate(wb.worksheets[0].iter_rows(values_only=True), 1):
                yield line, ["" if v is None else
                             v.isoformat()[:10] if isinstance(v, (_dt.date, _dt.datetime))
                             else str(v) for v in values]
        finally:
            wb.close()
        return
    with open(path, newline="", encoding=_encoding(path)) as f:
        yield from _csv_rows(f)


def write_csv(path: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
