"""The command line's semantic style regions: `stylize --regions auto` (or 1-8), its settings, and
the region map written next to the output (<out>_regions.png)."""
from __future__ import annotations

import argparse
import math
import os

from ..errors import InfinityError
from ..style import Regions
from ..style.clustering import MAX_REGIONS
from ..style.regions import POSITION_WEIGHT_RANGE, STRENGTH_RANGE, check_region_styles
from ..style.region_map import draw_region_map


def add_region_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--regions", metavar="auto|1-8",
                        help="semantic style regions: each region of the content is painted by the style image region "
                             "it resembles; 'auto' picks the number of regions per image. Writes <out>_regions.png")
    parser.add_argument("--region-attention", choices=["soft", "hard"], default="soft",
                        help="soft: a pull toward the matched region; hard: other styles shut out")
    parser.add_argument("--region-strength", type=_within(*STRENGTH_RANGE), default=3.0,
                        help="nats that keys outside a region's match lose (%g to %g; 0 = the global mix)" % STRENGTH_RANGE)
    parser.add_argument("--position-weight", type=_within(*POSITION_WEIGHT_RANGE), default=0.25,
                        help="weight of being in the same place in the matching (%g to %g)" % POSITION_WEIGHT_RANGE)


def _within(low: float, high: float):
    """An argparse type: a number from `low` to `high` (the Style Regions node's widget limits)."""
    def read(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"give a number from {low:g} to {high:g}, not {text!r}")
        return value
    return read


def _count(text: str):
    if text.strip().lower() == "auto":
        return None
    if text.strip().isdigit() and 1 <= int(text) <= MAX_REGIONS:
        return int(text)
    raise InfinityError(f"--regions {text!r}: give 'auto' or a number of regions from 1 to {MAX_REGIONS}.")


def region_options(args, styles: list) -> dict:
    """stylize() keyword arguments for the region options (none without --regions), checked with
    the run's styles before any model loads."""
    if args.regions is None:
        return {}
    regions = Regions(count=_count(args.regions), hard=args.region_attention == "hard",
                      strength=args.region_strength, position_weight=args.position_weight)
    check_region_styles(styles)
    stem, _ = os.path.splitext(args.out)
    written = []

    def write_map(found) -> None:
        path = f"{stem}_regions.png" if args.batch == 1 else f"{stem}_regions_{len(written)}.png"
        draw_region_map(found).save(path)
        written.append(path)
        print(f"wrote {path}")
    return {"regions": regions, "on_regions": write_map}
