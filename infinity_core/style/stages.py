"""The stage schedule: which scale steps share keys (key stage) and blend queries (fine stage).

Steps are 0-based indices into the model's scale schedule: at 1024^2, step 0 is the 1x1 scale
and step 12 the 64x64 one. The paper's key stage {2, 3} is then 4x4 and 6x6, its fine stage
{4..7} 8x8 to 20x20 (the reading of the same group's public Infinite-Story code).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..errors import InfinityError
from ..schedules import PIXEL_BUDGETS, Schedule

# Steps and ranges: ASCII digits only (as the front end's parser reads them), spaces around them allowed.
_STEP_ITEM = re.compile(r"[ \t]*([0-9]+)[ \t]*(?:-[ \t]*([0-9]+)[ \t]*)?")
# No schedule has more scales than the longest pixel budget; a larger step is refused before a range expands.
LAST_STEP = max(PIXEL_BUDGETS.values()) - 1


def parse_steps(text: str) -> frozenset[int]:
    """'2,3' -> {2, 3}; '4-7' -> {4, 5, 6, 7}; '' -> the empty set.

    The rules (and their messages) are shared with the front end's parser through
    tests/data/step_text_cases.json."""
    steps: set[int] = set()
    for item in str(text).split(","):
        if not item.strip(" \t"):
            continue
        match = _STEP_ITEM.fullmatch(item)
        if not match:
            raise InfinityError(f"Could not read the step list '{text}': write step numbers and ranges "
                                "separated by commas, such as '2,3' or '4-7'.")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise InfinityError(f"In '{text}', the range {first}-{last} runs backwards; write {last}-{first}.")
        if last > LAST_STEP:
            raise InfinityError(f"Step {last} in '{text}' is past the last scale: the longest schedule has "
                                f"{LAST_STEP + 1} scales, steps 0-{LAST_STEP}.")
        steps.update(range(first, last + 1))
    return frozenset(steps)


def format_steps(steps) -> str:
    return ",".join(str(s) for s in sorted(steps))


def grid_sizes(schedule: Schedule) -> str:
    return ", ".join(f"{si}: {w}x{h}" for si, (h, w) in enumerate(schedule.scales))  # width x height, as ComfyUI writes sizes


@dataclass(frozen=True)
class Stages:
    """Where and how strongly the three mechanisms act.

    key_strength / fine_strength in [0, 1] blend each stage's edit with plain attention (1 = the
    paper). `layers` is an inclusive (first, last) block range, None = every block. `uncond`
    applies the edits to the unconditional half of the CFG batch as well."""
    key_steps: frozenset = frozenset({2, 3})
    fine_steps: frozenset = frozenset({4, 5, 6, 7})
    feature_init: bool = True
    key_sharing: bool = True
    query_sharing: bool = True
    layers: tuple[int, int] | None = None
    uncond: bool = True
    key_strength: float = 1.0
    fine_strength: float = 1.0

    @property
    def init_steps(self) -> frozenset[int]:
        """Feature Initialization covers every step before the first key step."""
        if not self.feature_init or not self.key_steps:
            return frozenset()
        return frozenset(range(min(self.key_steps)))

    def shares_keys_at(self, step: int) -> bool:
        return self.key_sharing and step in self.key_steps

    def blends_queries_at(self, step: int) -> bool:
        return self.query_sharing and step in self.fine_steps

    def edits_layer(self, layer: int) -> bool:
        return self.layers is None or self.layers[0] <= layer <= self.layers[1]

    def style_needed_until(self) -> int:
        """Last step that reads the style rows (-1: none)."""
        steps = set(self.init_steps) | (set(self.key_steps) if self.key_sharing else set())
        return max(steps, default=-1)

    def content_needed_until(self) -> int:
        """Last step that reads the content rows (-1: none)."""
        steps = (set(self.key_steps) if self.key_sharing else set()) | (set(self.fine_steps) if self.query_sharing else set())
        return max(steps, default=-1)

    def rows_at(self, steps: int, styles: int, guided: bool) -> list[int]:
        """Batch rows at each of `steps` steps of one stylized image: the content and style rows
        leave after their leave steps, the generation row stays (all twice with guidance)."""
        content, style = max(self.content_needed_until(), 0), max(self.style_needed_until(), 0)
        return [(2 if guided else 1) * (1 + (si <= content) + styles * (si <= style)) for si in range(steps)]

    def leave_steps(self) -> set[int]:
        """Steps after which the content or the style rows leave the batch (each after its last
        reader, or after step 0 when nothing reads it)."""
        return {max(self.content_needed_until(), 0), max(self.style_needed_until(), 0)}

    @property
    def reads_key_steps(self) -> bool:
        """Key steps place Key Stage Attention Sharing and end Feature Initialization."""
        return self.key_sharing or self.feature_init

    @property
    def reads_fine_steps(self) -> bool:
        return self.query_sharing

    def validate(self, schedule: Schedule, depth: int | None) -> None:
        """Refuses what cannot run on this schedule; the steps of a switched-off stage are never read,
        so they are not checked. depth None (no model loaded yet): the layer range is left for later."""
        last = len(schedule) - 1
        read = [(name, steps) for name, steps, used in (("key", self.key_steps, self.reads_key_steps),
                                                        ("fine", self.fine_steps, self.reads_fine_steps)) if used]
        for name, steps in read:
            bad = sorted(s for s in steps if not 0 <= s <= last)
            if bad:
                raise InfinityError(
                    f"{name.capitalize()} step {format_steps(bad)} is out of range: this schedule has "
                    f"{len(schedule)} scales, steps 0-{last} ({grid_sizes(schedule)}).")
        overlap = self.key_steps & self.fine_steps
        if overlap and len(read) == 2:
            raise InfinityError(f"Step {format_steps(overlap)} is both a key step and a fine step; "
                                "a step belongs to one stage.")
        if self.reads_key_steps and not self.key_steps:
            raise InfinityError("The key stage is empty: give key steps (such as '2,3'), or turn off "
                                "Key Stage Attention Sharing and Feature Initialization.")
        if self.reads_fine_steps and not self.fine_steps:
            raise InfinityError("The fine stage is empty: give fine steps (such as '4-7'), or turn off "
                                "Adaptive Query Sharing.")
        if self.layers is not None and depth is not None:
            first, last_layer = self.layers
            if not 0 <= first <= last_layer < depth:
                raise InfinityError(f"Layer range {first}-{last_layer} does not fit this model's "
                                    f"{depth} blocks (0-{depth - 1}).")
        for name, value in (("key", self.key_strength), ("fine", self.fine_strength)):
            if not 0.0 <= value <= 1.0:
                raise InfinityError(f"The {name} strength must be between 0 and 1, got {value}.")


def describe_schedule(schedule: Schedule, stages: Stages) -> list[tuple[int, tuple[int, int], str]]:
    """(step, grid, role) per scale; role is 'init', 'key', 'fine' or ''."""
    def role(si):
        if si in stages.key_steps:
            return "key"
        if si in stages.fine_steps:
            return "fine"
        return "init" if si in stages.init_steps else ""
    return [(si, hw, role(si)) for si, hw in enumerate(schedule.scales)]


def read_stages(key_text: str, fine_text: str, **settings) -> Stages:
    """Stages from the step texts, reading only the text of a stage that is on: a switched-off stage's
    text is kept by the node but never parsed, so it cannot block a run."""
    stages = Stages(key_steps=frozenset(), fine_steps=frozenset(), **settings)
    return replace(stages, key_steps=parse_steps(key_text) if stages.reads_key_steps else frozenset(),
                   fine_steps=parse_steps(fine_text) if stages.reads_fine_steps else frozenset())
