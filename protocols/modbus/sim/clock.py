"""The simulator's clock: simulated epoch seconds that a test can speed up, freeze or advance."""

from __future__ import annotations

import time

__all__ = ["SimClock"]


class SimClock:
    """Simulated epoch seconds: wall time, sped up by ``speed``, plus what a test advanced.

    ``speed = 0`` freezes time so a test moves it only with :meth:`advance`.
    """

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0, found {speed}")
        self._real0 = time.monotonic()
        self._sim0 = time.time() if start is None else start
        self.speed = speed

    def __call__(self) -> float:
        return self._sim0 + (time.monotonic() - self._real0) * self.speed

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the simulated clock only moves forward")
        self._sim0 += seconds
        return self()

    def set_speed(self, speed: float) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0, found {speed}")
        now = self()
        self._real0, self._sim0, self.speed = time.monotonic(), now, speed
