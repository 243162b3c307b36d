"""The naive forecast (persistence): the target will be what it was at the newest reading.

The first baseline any forecast must beat. At horizon ``H`` the forecast for ``t + H`` is
the value at ``t``. River-style streaming model over the same lag window as the LSTMs
(:class:`~model_contract.FeatureBuffer.window`, oldest row first): nothing to learn,
nothing allocated per record.

>>> import numpy as np
>>> p = Persistence(target_index=1)
>>> window = np.array([[0.0, 10.0], [1.0, 11.5]])  # two lags, columns (a, target)
>>> p.predict_one(window)
11.5
>>> p.learn_one(window, 12.0)  # no state
>>> p.predict_one(window)
11.5
"""

from __future__ import annotations

import numpy as np


class Persistence:
    """``predict_one(window)`` = the newest row's target value; ``learn_one`` does nothing."""

    __slots__ = ("target_index",)
    name = "persistence"

    def __init__(self, target_index: int) -> None:
        self.target_index = int(target_index)

    def predict_one(self, window: np.ndarray) -> float:
        return float(window[-1, self.target_index])

    def learn_one(self, window: np.ndarray, y: float) -> None:
        return None
