"""The stage scheduler: where and how strongly the paper's three mechanisms act."""
from __future__ import annotations

from dataclasses import replace

from ..infinity_core import style
from ._api import io
from .common import CATEGORY, StagesIO, user_errors

LAST_BLOCK = -1  # last_layer value meaning "through the model's last block"


def _switch(name: str, tooltip: str):
    return io.Boolean.Input(name, default=True, label_on="on", label_off="off", tooltip=tooltip)


def _strength(name: str, tooltip: str):
    return io.Float.Input(name, default=1.0, min=0.0, max=1.0, step=0.05, tooltip=tooltip)


def for_model(stages: style.Stages, depth: int) -> style.Stages:
    """The stages with an open layer range closed at the model's last block (only the model knows it)."""
    if stages.layers is not None and stages.layers[1] == LAST_BLOCK:
        return replace(stages, layers=(stages.layers[0], depth - 1))
    return stages


class StageScheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfinityStyleStageScheduler",
            display_name="Infinity Stage Scheduler",
            category=CATEGORY,
            description="Which scale steps share attention with the style (key stage) and blend the content's "
                        "queries (fine stage), and which mechanisms are on. Steps count from 0 (the 1x1 scale). The strip "
                        "shows each step's grid for the connected sampler's size: click a cell to cycle none, key, "
                        "fine; drag to paint a range. After a run it shows each scale's preview. Defaults are the "
                        "paper's.",
            inputs=[
                io.String.Input("key_steps", default="2,3",
                                tooltip="Key stage steps: numbers and ranges such as '2,3' or '2-3'. The generated "
                                        "image attends to the style image here."),
                io.String.Input("fine_steps", default="4-7",
                                tooltip="Fine stage steps, such as '4-7'. The generated image's queries are blended "
                                        "with the content's here, keeping the content's layout. Not read while "
                                        "Adaptive Query Sharing is off."),
                _switch("feature_init", "Feature Initialization: before the key stage the generated image starts "
                                        "from the style image's tokens."),
                _switch("key_sharing", "Key Stage Attention Sharing: at key steps, attend with the content's query "
                                       "to content and style keys, and to generated and style values."),
                _switch("query_sharing", "Adaptive Query Sharing: at fine steps, blend the generated image's "
                                         "queries with the content's by their cosine similarity."),
                io.Int.Input("first_layer", default=0, min=0, max=255,
                             tooltip="First transformer block the sharing edits (0 = the first)."),
                io.Int.Input("last_layer", default=LAST_BLOCK, min=LAST_BLOCK, max=255,
                             tooltip="Last transformer block the sharing edits (-1 = the last; Infinity-2B has 0-31)."),
                io.Boolean.Input("apply_to_uncond", default=True, label_on="on", label_off="off",
                                 tooltip="Make the same edits in the unconditional half of classifier-free guidance."),
                _strength("key_strength", "Blend of Key Stage Attention Sharing with plain attention (1 = full)."),
                _strength("fine_strength", "Blend of Adaptive Query Sharing with plain attention (1 = full)."),
            ],
            outputs=[StagesIO.Output(display_name="stages", tooltip="The stage settings, for the sampler's stages "
                                                                    "input.")],
        )

    @classmethod
    @user_errors
    def execute(cls, key_steps, fine_steps, feature_init, key_sharing, query_sharing, first_layer, last_layer,
                apply_to_uncond, key_strength, fine_strength):
        stages = style.read_stages(
            key_steps, fine_steps, feature_init=feature_init, key_sharing=key_sharing, query_sharing=query_sharing,
            layers=None if (first_layer, last_layer) == (0, LAST_BLOCK) else (first_layer, last_layer),
            uncond=apply_to_uncond, key_strength=key_strength, fine_strength=fine_strength)
        return io.NodeOutput(stages)
