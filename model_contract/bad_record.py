"""The one error for a reading that cannot be used: :class:`BadRecord`, with a short machine-friendly reason.

Raised by the contract's parsers (:func:`model_contract.calendar.parse_timestamp`,
:func:`model_contract.features.rows_to_matrix`) and the edge's admission; the edge dead-letters the
reading with ``reason`` and counts it. Standard library only (the wire contract's Lambdas import it).

>>> err = BadRecord("out_of_range", "Ot_avg = 1e9")
>>> str(err), err.reason, isinstance(err, ValueError)
('out_of_range: Ot_avg = 1e9', 'out_of_range', True)
"""

from __future__ import annotations


class BadRecord(ValueError):
    """A reading that cannot be used; ``reason`` is a short machine-friendly code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
