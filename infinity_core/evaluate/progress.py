"""One progress bar over a whole evaluation run, with the time left."""
from __future__ import annotations

import sys
import time


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class Progress:
    """`total` images, `done` of them already made by an earlier run. The time left is this run's
    wall time per image (generation, scoring and writing) times the images left. On a terminal the
    bar redraws in place; in a log it prints a line every `log_every` images."""

    def __init__(self, total: int, done: int, stream=None, width: int = 30, log_every: int = 10):
        self.total, self.done, self.width, self.log_every = total, done, width, log_every
        self.stream = stream if stream is not None else sys.stderr
        self.live = getattr(self.stream, "isatty", lambda: False)()
        self.start, self.made = time.perf_counter(), 0

    def line(self) -> str:
        fraction = self.done / self.total if self.total else 1.0
        filled = int(fraction * self.width)
        text = f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} images"
        if self.made:
            per_image = (time.perf_counter() - self.start) / self.made
            text += f", {per_image:.2f} s/image, {duration(per_image * (self.total - self.done))} left"
        return text

    def show(self) -> None:
        if self.live:
            self.stream.write("\r" + self.line())
        elif self.made % self.log_every == 0 or self.done == self.total:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def advance(self) -> None:
        self.done += 1
        self.made += 1
        self.show()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
