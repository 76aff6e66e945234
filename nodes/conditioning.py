"""Prompts to T5 features: the three prompts of a stylized run, or one plain prompt."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..infinity_core.errors import InfinityError
from ..infinity_core.network.text import TextBatch
from ..infinity_core.style import DEFAULT_TEMPLATE, encode_prompts
from . import comfy_bridge as bridge
from ._api import io
from .common import CATEGORY, ConditioningIO, TextEncoderIO, user_errors

NEGATIVE_TOOLTIP = "What to steer away from (optional). Empty = Infinity's learned unconditional text."


def _prompt(name: str, default: str, tooltip: str):
    # dynamic_prompts off: the front end would otherwise rewrite {a|b} (and the template's {content}).
    return io.String.Input(name, default=default, multiline=True, dynamic_prompts=False, tooltip=tooltip)


@dataclass
class PlainConditioning:
    """One prompt for plain text-to-image (no style path)."""
    text: TextBatch
    negative: Optional[TextBatch]


class Conditioner(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfinityStyleConditioner",
            display_name="Infinity Three-Prompt Conditioner",
            category=CATEGORY,
            description="The three prompts of a stylized image: the content path sees the content prompt, the style "
                        "path the style prompt, and the generated image the template filled with both.",
            inputs=[
                TextEncoderIO.Input("text_encoder", tooltip="From Infinity Loader."),
                _prompt("content", "a cat", "What to show, without style words (e.g. 'a cat')."),
                _prompt("style", "watercolor painting", "The style in words (e.g. 'watercolor painting'). With a "
                        "style image, describe that image's style; without one, this text alone is the style."),
                io.String.Input("template", default=DEFAULT_TEMPLATE, dynamic_prompts=False,
                                tooltip="The generated image's prompt: {content} and {style} are replaced by the "
                                        "prompts above."),
                _prompt("negative", "", NEGATIVE_TOOLTIP),
            ],
            outputs=[ConditioningIO.Output(display_name="conditioning",
                                           tooltip="The three encoded prompts, for Infinity Scale-wise Sampler.")],
        )

    @classmethod
    @user_errors
    def execute(cls, text_encoder, content, style, template, negative):
        bridge.load(text_encoder)
        return io.NodeOutput(encode_prompts(text_encoder.obj, content, style, template, negative))


class TextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfinityStyleTextEncode",
            display_name="Infinity Text Encode (plain)",
            category=CATEGORY,
            description="One prompt for plain Infinity text-to-image, sampled by the same Infinity Scale-wise Sampler "
                        "(leave its style, stages and content inputs empty).",
            inputs=[
                TextEncoderIO.Input("text_encoder", tooltip="From Infinity Loader."),
                _prompt("prompt", "a cat in watercolor painting", "The image to make."),
                _prompt("negative", "", NEGATIVE_TOOLTIP),
            ],
            outputs=[ConditioningIO.Output(display_name="conditioning",
                                           tooltip="The encoded prompt, for Infinity Scale-wise Sampler.")],
        )

    @classmethod
    @user_errors
    def execute(cls, text_encoder, prompt, negative):
        if not prompt.strip():
            raise InfinityError("The prompt is empty: describe the image in a few words (for example 'a cat').")
        prompts = [prompt.strip()] + ([negative.strip()] if negative.strip() else [])
        bridge.load(text_encoder)
        text = text_encoder.obj.encode(prompts)
        return io.NodeOutput(PlainConditioning(text.select([0]), text.select([1]) if len(prompts) == 2 else None))
