"""Which models serve: the batch model, the speed model, and a new speed model's probation.

:class:`Serving` is the one owner of the pair. A verified speed model is swapped in between two
batches (:meth:`Serving.swap_in`, called by :meth:`edge_app.app.EdgeApp.swap_speed`, which also
resets what learned from the old model); while its first forecasts are on probation
(:class:`~edge_app.swap.SwapGuard`, ``guard``) a processing path reads them, and when they are
absurd it rolls the swap back before the next reading (:meth:`Serving.roll_back`, through
:meth:`~edge_app.app.EdgeApp.roll_back_speed`) and reads :attr:`Serving.speed` again. Both write
the pointer a restart resumes from and keep the swapper's record of what serves (later notices
are compared with it).
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge_app.models import LoadedModel, write_pointer
from edge_app.swap import SpeedModelSwapper, SwapGuard

log = logging.getLogger("edge_app.swap")


class Serving:
    """The models serving now (``batch``, ``speed``: read them, change ``speed`` only through the methods)."""

    __slots__ = ("batch", "speed", "guard", "_swapper", "_pointer")

    def __init__(
        self,
        batch: LoadedModel,
        speed: LoadedModel,
        *,
        guard: SwapGuard,
        swapper: SpeedModelSwapper,
        pointer: Path,
        speed_published_at: float = 0.0,
    ) -> None:
        self.batch = batch
        self.speed = speed
        self.guard = guard
        self._swapper = swapper
        self._pointer = pointer
        swapper.serve(speed, speed_published_at)

    @property
    def versions(self) -> tuple[str, str]:
        """(batch version, speed version): what a prediction record and a device's saved state name."""
        return self.batch.version, self.speed.version

    def swap_in(self, loaded: LoadedModel) -> LoadedModel:
        """``loaded`` serves from the next record on, on probation (``guard`` armed with the model it replaces);
        the pointer names it, then its notice is finished (a crash before replays it). Returns the old model."""
        old, swapper = self.speed, self._swapper
        self.guard.arm(old, swapper.serving_published_at)  # the first forecasts decide whether it stays
        self.speed = loaded
        published = loaded.origin.get("published_at")
        swapper.serve(loaded, published if isinstance(published, int | float) else 0.0)
        self._write_pointer(loaded, swapper.serving_published_at)
        swapper.done(loaded)  # the notice is handled: forget it
        return old

    def roll_back(self) -> LoadedModel | None:
        """The model before the last swap serves again and the swapped-in version is refused from now on;
        returns that refused model (None: nothing to roll back to). The guard is no longer due either way."""
        guard, swapper = self.guard, self._swapper
        bad, previous = self.speed, guard.previous
        guard.due = False
        if previous is None:
            return None
        self.speed = previous
        swapper.roll_back(bad.version, previous, guard.previous_published_at)
        self._write_pointer(previous, guard.previous_published_at)
        return bad

    def _write_pointer(self, loaded: LoadedModel, published_at: float) -> None:
        try:
            write_pointer(self._pointer, loaded, Path(loaded.location), published_at=published_at)
        except OSError as exc:
            log.warning("could not persist the speed model pointer: %s", exc)
