"""CSV lines of a fixed width, the exact text :func:`csv.writer` (excel dialect) writes, at about half its cost.

``csv.writer`` writes each field as ``str(field)`` (``None`` as nothing), quoted only when it holds a
comma, a double quote, ``\\r`` or ``\\n``, and ends the row with ``\\r\\n``. :class:`CsvLine` formats the
row with one ``%s`` template (the same ``str`` of each field) and checks the result with a few C-level
scans: no quote, no ``None``, exactly ``width - 1`` commas and one line end. A row that fails the check
(a device id with a comma, a field that is None, ...) is written by ``csv.writer`` itself, so the text is
always the csv module's (tests/edge_app/test_csv_lines.py compares them byte for byte).

>>> line = CsvLine(3)
>>> line(("T1", 1.5, -0.0)), line(("a,b", None, 1e-300))
('T1,1.5,-0.0\\r\\n', '"a,b",,1e-300\\r\\n')

:func:`float_cells` writes a run of float cells in one orjson call (orjson's shortest float text is
``repr``'s wherever neither writes an exponent: 1e-4 <= |x| < 1e16, and 0), and says None wherever
the two may differ; the window spool builds its rows from such runs and checks the line with
:meth:`CsvLine.plain` (else the row goes through :class:`CsvLine`).
"""

from __future__ import annotations

import csv
import io

try:
    from orjson import dumps as _dumps
except ImportError:  # pragma: no cover - without orjson every row goes through CsvLine
    _dumps = None

__all__ = ["CsvLine", "float_cells"]


class CsvLine:
    """``line(row)``: the text ``csv.writer(...).writerow(row)`` writes, for rows of ``width`` fields."""

    __slots__ = ("_template", "_commas", "_buf", "_writer")

    def __init__(self, width: int) -> None:
        self._template = ",".join(["%s"] * width) + "\r\n"
        self._commas = width - 1
        self._buf = io.StringIO(newline="")
        self._writer = csv.writer(self._buf)

    def __call__(self, row: tuple) -> str:
        try:
            line = self._template % row
        except TypeError:  # another width (or a field whose str() fails: the csv module then raises it)
            return self.csv_text(row)
        if not self.plain(line):
            return self.csv_text(row)  # a field to quote, or None (csv writes it as nothing)
        return line

    def plain(self, line: str) -> bool:
        """Whether ``line`` (its fields' ``str`` joined by "," and ended by "\\r\\n") is what the csv module writes
        for them: no field with a quote, a comma or a line end to quote (``width - 1`` commas, one line end)
        and none that is None (``str`` writes "None", csv nothing; a text holding "None" is only checked again)."""
        return not (
            '"' in line
            or "None" in line
            or line.count(",") != self._commas
            or line.count("\n") != 1
            or line.count("\r") != 1
        )

    def csv_text(self, row: tuple | list) -> str:
        """What the csv module writes for ``row`` (any width)."""
        buf = self._buf
        buf.seek(0)
        buf.truncate()
        self._writer.writerow(row)
        return buf.getvalue()


def float_cells(values: list) -> str | None:
    """The cells ``csv.writer`` writes for ``values`` (``str`` of each, "," between), from one orjson call: None
    where orjson's text may not be ``str``'s (an exponent, ``|x| < 1e-4`` which orjson writes plainly, a value
    that is no finite float or int, no orjson, or an orjson that failed :data:`_PROBE`).

    >>> float_cells([40.56, -0.0, 17.0, 2]), float_cells([1e16]), float_cells([5e-05]), float_cells([float("nan")])
    ('40.56,-0.0,17.0,2', None, None, None)
    """
    if _dumps is None:
        return None
    try:
        text = _dumps(values)
    except TypeError:  # e.g. a numpy scalar, an int beyond 64 bits
        return None
    if b"e" in text or b"n" in text or b'"' in text or b"0.0000" in text:  # exponent, null/true/false, text, < 1e-4
        return None
    return text[1:-1].decode()


# floats whose text orjson must write as str() does for float_cells to be used (checked once, at import)
_PROBE = [
    0.0,
    -0.0,
    1.0,
    40.0,
    -17.7,
    0.1,
    1 / 3,
    0.30000000000000004,
    2.5e-4,
    0.0001,
    123456789012345.6,
    9999999999999998.0,
    7,
]
if _dumps is not None and _dumps(_PROBE)[1:-1].decode() != ",".join(map(str, _PROBE)):  # pragma: no cover
    _dumps = None
# whether orjson is there and writes floats as repr does wherever neither writes an exponent (the forecasts export
# relies on it too)
ORJSON_FLOATS_AS_REPR = _dumps is not None
