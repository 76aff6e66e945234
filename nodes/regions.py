"""Semantic style regions in the graph: the settings node, and the region maps the sampler outputs."""
from __future__ import annotations

import torch

from ..infinity_core.images import from_pil
from ..infinity_core.style import Regions
from ..infinity_core.errors import InfinityError
from ..infinity_core.style.clustering import MAX_REGIONS
from ..infinity_core.style.regions import POSITION_WEIGHT_RANGE, STRENGTH_RANGE
from ..infinity_core.style.region_map import draw_region_map, note_picture
from ._api import io
from .common import CATEGORY, RegionsIO, user_errors

SEMANTIC, GLOBAL = "semantic regions", "global mix"
AUTO = "auto"
SOFT, HARD = "soft", "hard"
MODES, COUNTS, KINDS = [SEMANTIC, GLOBAL], [AUTO] + [str(k) for k in range(2, MAX_REGIONS + 1)], [SOFT, HARD]


class StyleRegions(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfinityStyleRegions",
            display_name="Infinity Style Regions",
            category=CATEGORY,
            description="Several style images, no masks: the content is split into regions found in the model's own "
                        "features, each matched to the region of the style images it resembles, and painted by that "
                        "style. Connect to the sampler's regions input; its region_map output shows the matching.",
            inputs=[
                io.Combo.Input("mode", options=MODES, default=SEMANTIC,
                               tooltip="semantic regions: each content region takes the style it matches. global mix: "
                                       "every style everywhere, by weight (as without this node)."),
                io.Combo.Input("regions", options=COUNTS, default=AUTO,
                               tooltip=f"How many regions to split the content and each style image into. auto: the "
                                       f"number (2-{MAX_REGIONS}) whose regions are most distinct (silhouette)."),
                io.Float.Input("position_weight", default=0.25, min=POSITION_WEIGHT_RANGE[0], max=POSITION_WEIGHT_RANGE[1],
                               step=0.05,
                               tooltip="How much a style region in the same place of its picture counts in the "
                                       "matching, next to looking alike (0 = looks only)."),
                io.Float.Input("strength", default=3.0, min=STRENGTH_RANGE[0], max=STRENGTH_RANGE[1], step=0.25,
                               tooltip="How strongly each region keeps to the style region it matched: keys outside "
                                       "the match lose this many nats (3: about 1/20 of their pull). 0 = the global mix "
                                       "at key steps."),
                io.Combo.Input("attention", options=KINDS, default=SOFT,
                               tooltip="soft: a pull toward the matched region. hard: the soft pull, and the other "
                                       "styles are shut out for that region."),
            ],
            outputs=[RegionsIO.Output(display_name="regions", tooltip="Connect to the Sampler's regions input. In "
                                                                      "global mix mode it carries nothing.")],
        )

    @classmethod
    @user_errors
    def execute(cls, mode, regions, position_weight, strength, attention):
        for name, value, options in (("mode", mode, MODES), ("regions", regions, COUNTS), ("attention", attention, KINDS)):
            if value not in options:  # an API prompt skips the widget's list
                raise InfinityError(f"{name} {value!r} is not one of: {', '.join(options)}.")
        if mode == GLOBAL:
            return io.NodeOutput(None)
        settings = Regions(count=None if regions == AUTO else int(regions), hard=attention == HARD, strength=strength,
                           position_weight=position_weight)
        settings.check()
        return io.NodeOutput(settings)


def region_maps(found: list) -> torch.Tensor:
    """IMAGE [B, H, W, 3]: the region map of each image of a batch, or a note that there are none."""
    if not found:
        return from_pil(note_picture("No region map: the styles were mixed globally.\n"
                                     "Connect Infinity Style Regions (semantic regions)."))
    return torch.cat([from_pil(draw_region_map(regions)) for regions in found])
