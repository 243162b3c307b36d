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
"""

from __future__ import annotations

import csv
import io

__all__ = ["CsvLine"]


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
        if (
            '"' in line
            or "None" in line
            or line.count(",") != self._commas
            or line.count("\n") != 1
            or line.count("\r") != 1
        ):
            return self.csv_text(row)  # a field to quote, or None (csv writes it as nothing)
        return line

    def csv_text(self, row: tuple | list) -> str:
        """What the csv module writes for ``row`` (any width)."""
        buf = self._buf
        buf.seek(0)
        buf.truncate()
        self._writer.writerow(row)
        return buf.getvalue()
