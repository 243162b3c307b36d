"""One scenario's figures, and the ledger that computes readings sent / predicted / duplicated / lost."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Result:
    """What a scenario measured. ``checks`` maps a named expectation to whether it held."""

    name: str
    family: str
    scenario_id: str = ""  # the runner's name for it (--only / --known-failing)
    readings_sent: int = 0
    readings_predicted: int = 0
    readings_duplicated: int = 0
    readings_lost: int = 0
    windows_sent: int = 0
    windows_delivered: int = 0
    windows_lost: int = 0
    models_rejected: int = 0
    recovery_s: float | None = None
    seconds: float = 0.0
    checks: dict[str, bool] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error and bool(self.checks) and all(self.checks.values())

    def check(self, name: str, ok: bool) -> bool:
        """Record one expectation; returns it so callers can branch on it."""
        self.checks[name] = bool(ok)
        return bool(ok)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        return out


def ledger(result: Result, sent_keys: Iterable[str], predicted_keys: Iterable[str]) -> None:
    """Fill the reading columns: every sent key predicted at least once; extras are duplicates.

    >>> r = Result("x", "y")
    >>> ledger(r, ["a", "b", "c"], ["a", "a", "b", "z"])
    >>> (r.readings_sent, r.readings_predicted, r.readings_duplicated, r.readings_lost)
    (3, 2, 1, 1)
    >>> r.figures["unexpected_predictions"]
    1
    """
    sent = set(sent_keys)
    counts = Counter(predicted_keys)
    result.readings_sent = len(sent)
    result.readings_predicted = sum(1 for k in sent if counts.get(k))
    result.readings_duplicated = sum(n - 1 for k, n in counts.items() if n > 1 and k in sent)
    result.readings_lost = result.readings_sent - result.readings_predicted
    result.figures["unexpected_predictions"] = sum(1 for k in counts if k not in sent)
