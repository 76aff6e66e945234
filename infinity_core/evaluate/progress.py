"""One progress bar over a whole evaluation run (all ranks of a torchrun launch), with the time left."""
from __future__ import annotations

import sys
import time


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class Progress:
    """`total` images, `done` of them recorded before this run started. The time left is this
    run's wall time per recorded image (over every process recording into the run) times the
    images left. On a terminal the bar redraws in place; in a log it prints a line every
    `log_every` images and at the end."""

    def __init__(self, total: int, done: int, stream=None, width: int = 30, log_every: int = 10, label: str = ""):
        self.total, self.done, self.width, self.log_every = total, done, width, log_every
        self.stream = stream if stream is not None else sys.stderr
        self.live = getattr(self.stream, "isatty", lambda: False)()
        self.prefix = f"{label}: " if label else ""
        self.start, self.first, self.logged = time.perf_counter(), done, None

    def line(self) -> str:
        fraction = self.done / self.total if self.total else 1.0
        filled = int(fraction * self.width)
        text = f"{self.prefix}[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} images"
        if self.done > self.first:
            per_image = (time.perf_counter() - self.start) / (self.done - self.first)
            text += f", {per_image:.2f} s/image, {duration(per_image * (self.total - self.done))} left"
        return text

    def update(self, done: int) -> None:
        """`done` images of the run are recorded now."""
        self.done = done
        self.show()

    def show(self) -> None:
        if self.live:
            self.stream.write("\r" + self.line())
        elif self.logged is None or self.done // self.log_every > self.logged // self.log_every \
                or (self.done == self.total and self.logged != self.total):
            self.stream.write(self.line() + "\n")
            self.logged = self.done
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
