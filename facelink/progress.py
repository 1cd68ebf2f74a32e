"""Steady progress logging for long driver-side loops: stage, rows done and rate, every few seconds.

A job that streams many rows through the driver (writing thumbnails, rendering cards, copying files) wraps
the loop in :class:`Progress` so that a long run says how far it got at a steady interval instead of going
quiet for minutes::

    with Progress("thumbnails", total=len(photo_ids), every_s=10) as prog:
        for row in rows:
            write(row)
            prog.advance()

or, for a plain iterable, ``for row in track(rows, "thumbnails", total=n): ...``. The start, every
interval and the end are logged on the given logger (``facelink.progress`` by default).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TypeVar

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")

#: Seconds between two progress lines unless the caller says otherwise.
DEFAULT_EVERY_S = 10.0


class Progress:
    """Counts rows done in one stage and logs ``stage: done/total rows, rate`` at most every ``every_s``.

    Args:
        stage: what is being done, e.g. ``"thumbnails"``; starts every log line.
        total: rows expected, when known (adds a percentage and an estimate of the time left).
        every_s: seconds between two progress lines (> 0).
        logger: where to log; ``facelink.progress`` when omitted.
        clock: a monotonic clock in seconds (tests pass a fake one).

    Raises:
        ValueError: ``every_s`` is not positive or ``total`` is negative.
    """

    def __init__(self, stage: str, total: int | None = None, every_s: float = DEFAULT_EVERY_S,
                 logger: logging.Logger | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if every_s <= 0:
            raise ValueError(f"every_s must be > 0, got {every_s}")
        if total is not None and total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        self.stage = stage
        self.total = total
        self.every_s = every_s
        self.done = 0
        self.lines = 0
        self._log = logger or log
        self._clock = clock
        self._start = clock()
        self._last = self._start

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._start

    @property
    def rate(self) -> float:
        """Rows per second since the start (0 before any time has passed)."""
        elapsed = self.elapsed_s
        return self.done / elapsed if elapsed > 0 else 0.0

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more rows done; log a progress line when ``every_s`` has passed since the last one."""
        self.done += n
        now = self._clock()
        if now - self._last >= self.every_s:
            self._last = now
            self._emit("progress")

    def message(self) -> str:
        """The progress line as it would be logged now."""
        rate = self.rate
        if self.total:
            pct = 100.0 * self.done / self.total
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            return (f"{self.stage}: {self.done}/{self.total} rows ({pct:.0f}%), {rate:.1f} rows/s, "
                    f"{self.elapsed_s:.0f}s elapsed, ~{left:.0f}s left")
        return f"{self.stage}: {self.done} rows, {rate:.1f} rows/s, {self.elapsed_s:.0f}s elapsed"

    def _emit(self, what: str) -> None:
        self.lines += 1
        self._log.info("%s %s", what, self.message())

    def __enter__(self) -> Progress:
        self._start = self._last = self._clock()
        total = f" of {self.total} rows" if self.total is not None else ""
        self._log.info("started %s%s", self.stage, total)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._emit("failed" if exc is not None else "finished")


def track(items: Iterable[ItemT], stage: str, total: int | None = None, every_s: float = DEFAULT_EVERY_S,
          logger: logging.Logger | None = None) -> Iterator[ItemT]:
    """Yield ``items`` unchanged, logging progress of ``stage`` as they are consumed."""
    with Progress(stage, total, every_s, logger) as prog:
        for item in items:
            yield item
            prog.advance()


@contextmanager
def stopwatch(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Add the block's wall time to ``seconds[stage]`` (what a job records as its stage timings)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start
