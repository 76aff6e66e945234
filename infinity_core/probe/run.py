"""The Stage Probe: at which scale steps does a prompt take hold? (the paper's Fig. 2 analysis)

A base run with the base prompt, then one run per probed step s in which only step s sees the
alternative prompt; every run has the same seed. A tile that moves far from the base image shows
a step where the alternative prompt still changes the picture (early steps: layout and content;
later steps: palette and texture). The cost is (probed steps + 1) plain runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..errors import InfinityError
from ..network.text import TextBatch
from ..sampler import SamplingSettings, ScaleEvent, TextAt, generate
from ..schedules import Schedule


@dataclass(frozen=True)
class ProbeRun:
    """One run of the probe: `step` None is the base run, else the step that sees the alternative."""
    step: Optional[int]

    def text_at(self, base: TextBatch, alternative: TextBatch) -> Optional[TextAt]:
        if self.step is None:
            return None
        return lambda si: alternative if si == self.step else base

    def label(self, schedule: Schedule) -> str:
        if self.step is None:
            return "base"
        h, w = schedule.scales[self.step]
        return f"step {self.step}: {w}x{h}"  # width x height, as ComfyUI writes sizes


def probe_runs(schedule: Schedule, steps: Optional[Sequence[int]] = None) -> list[ProbeRun]:
    """The base run, then one run per step (all steps of the schedule by default)."""
    steps = range(len(schedule)) if steps is None else sorted(set(steps))
    beyond = [s for s in steps if not 0 <= s < len(schedule)]
    if beyond:
        raise InfinityError(f"Steps {beyond} are out of range: this schedule has steps 0-{len(schedule) - 1}.")
    return [ProbeRun(None)] + [ProbeRun(s) for s in steps]


def probe(model, base: TextBatch, alternative: TextBatch, schedule: Schedule, seed: int,
          settings: SamplingSettings = SamplingSettings(), negative: Optional[TextBatch] = None,
          runs: Optional[Sequence[ProbeRun]] = None,
          callback: Optional[Callable[[ProbeRun, ScaleEvent], None]] = None) -> list[torch.Tensor]:
    """Summed codes [1, d, 1, H, W] of each run (`probe_runs(schedule)` by default), in order.

    `base` and `alternative` are one prompt each; callback(run, event) follows every scale of
    every run (progress, previews, cancel)."""
    if len(base) != 1 or len(alternative) != 1:
        raise InfinityError("The Stage Probe takes one base prompt and one alternative prompt.")
    codes = []
    for run in probe_runs(schedule) if runs is None else runs:
        on_scale = None if callback is None else (lambda event, run=run: callback(run, event))
        codes.append(generate(model, base, schedule, [seed], settings, negative=negative, callback=on_scale,
                              text_at=run.text_at(base, alternative)).summed_codes)
    return codes


def pixel_differences(base: torch.Tensor, images: torch.Tensor) -> list[float]:
    """Mean absolute difference of each image [N, H, W, C] from the base image [H, W, C] (same range)."""
    return [float(d) for d in (images - base).abs().flatten(1).mean(1)]
