"""The scale-wise sampler: stylized (three prompts) or plain text-to-image, one node for both."""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from fractions import Fraction

import torch

from ..infinity_core.errors import InfinityError
from ..infinity_core.memory_plan import decode_scratch_bytes, sampling_bytes
from ..infinity_core.sampler import LIMITS, SEED_RANGE, SamplingSettings, generate, seeds_for
from ..infinity_core.schedules import H_DIV_W_TEMPLATES, PIXEL_BUDGETS, Schedule, schedule, schedule_for_size
from ..infinity_core.style import Stages, StyleReference, stylize
from . import comfy_bridge as bridge
from ._api import io
from .common import (CATEGORY, CodesIO, ConditioningIO, ContentIO, ModelIO, RegionsIO, StagesIO, StyleIO, VaeIO,
                     user_errors)
from .conditioning import PlainConditioning
from .decode import preview_picture
from .regions import region_maps
from .stages import for_model

def _aspect_label(h_div_w: float) -> str:
    ratio = Fraction(h_div_w).limit_denominator(7)  # h/w; the templates are 1:1 ... 1:3 and 3:1
    shape = "square" if ratio == 1 else "portrait" if ratio > 1 else "landscape"
    return f"{ratio.denominator}:{ratio.numerator} {shape}"


ASPECTS = {_aspect_label(t): t for t in H_DIV_W_TEMPLATES}  # "W:H shape" -> h/w template
CUSTOM, FROM_CONTENT = "custom (custom_size)", "from content image"
_SIZE = re.compile(r"^\s*(\d+)\s*[xX*]\s*(\d+)\s*$")


@dataclass
class Codes:
    """Sampled images before decoding: summed codes [B, d, 1, H, W] on the VAE's latent grid and
    the schedule they follow."""
    summed: torch.Tensor
    schedule: Schedule


def make_schedule(aspect: str, custom_size: str, pixel_budget: str, content) -> Schedule:
    if aspect == FROM_CONTENT:
        if content is None:
            raise InfinityError(f"Aspect '{FROM_CONTENT}' needs a content image: connect Infinity Content Image "
                                "Encoder, or pick an aspect.")
        return schedule_for_size(content.shape[0], content.shape[1], pixel_budget)
    if aspect == CUSTOM:
        match = _SIZE.match(custom_size)
        if not match:
            raise InfinityError(f"Could not read the size {custom_size!r}: write width x height, such as 1024x768.")
        width, height = int(match[1]), int(match[2])
        return schedule_for_size(height, width, pixel_budget)
    if aspect not in ASPECTS:
        raise InfinityError(f"aspect {aspect!r} is not one of: {', '.join([*ASPECTS, CUSTOM, FROM_CONTENT])}.")
    return schedule(ASPECTS[aspect], pixel_budget)


def _sampling_bytes(model, schedule: Schedule, rows) -> int:
    """What sampling needs beyond the weights: the KV cache and largest step of one pass (rows: the
    batch rows, or the rows at each step), and room to decode the largest fp8 / GGUF layer."""
    return (sampling_bytes(model.config, schedule.token_counts, rows, model.compute_dtype.itemsize)
            + decode_scratch_bytes(model))


class ScaleReporter:
    """The per-scale callback: stop here if the user cancelled, else advance the bar. Keeps the first
    image's preview of each scale for the Stage Scheduler's strip; the node itself shows the
    previews only where no strip does (no scheduler connected), since a picture on the node grows
    it over its neighbours."""

    def __init__(self, vae, plan: Schedule, images: int, on_node: bool):
        self.vae, self.plan, self.on_node = vae, plan, on_node
        self.progress, self.done = bridge.Progress(len(plan) * images), itertools.count(1)
        self.previews = {}  # step -> PIL picture of the first image

    def __call__(self, event):
        bridge.check_interrupt()
        picture = None
        if event.step not in self.previews:  # the first image's, for the strip
            picture = self.previews[event.step] = self._picture(event)
        if self.on_node:
            self.progress.update(next(self.done), lambda: picture or self._picture(event))
        else:
            self.progress.update(next(self.done))

    def _picture(self, event):
        return preview_picture(self.vae, event.summed_codes, self.plan.scales[event.step])

    def ui(self) -> dict:
        """The sampler's UI output: the grids it ran and each scale's preview (temp files), which the
        front end's stage strip shows. Custom keys, so the node draws no gallery of its own."""
        return {"scale_grids": [list(hw) for hw in self.plan.scales],
                "scale_previews": bridge.save_temp_pictures([self.previews[s] for s in sorted(self.previews)],
                                                            "infinitystyle_scale")}


def sampling_inputs(seed_tooltip: str, with_content: bool) -> list:
    """The seed, sampling and size widgets the sampling nodes share (in this widget order)."""
    aspects, from_content = ([*ASPECTS, CUSTOM, FROM_CONTENT], "; or the content image's shape") if with_content \
        else ([*ASPECTS, CUSTOM], "")
    return [
        io.Int.Input("seed", default=0, min=0, max=SEED_RANGE - 1, control_after_generate=True, tooltip=seed_tooltip),
        io.Float.Input("cfg", default=3.0, min=LIMITS["cfg"][0], max=LIMITS["cfg"][1], step=0.1, round=0.01,
                       tooltip="Classifier-free guidance. 3 is Infinity's usual value; 1 turns it off."),
        io.Float.Input("tau", default=0.5, min=LIMITS["tau"][0], max=LIMITS["tau"][1], step=0.05, round=0.01,
                       tooltip="Sampling temperature: lower is plainer and more stable, higher more varied. "
                               "0.5 suits Infinity-2B; Infinity-8B's own examples use 1.0."),
        io.Int.Input("top_k", default=900, min=LIMITS["top_k"][0], max=LIMITS["top_k"][1],
                     tooltip="Keep the k likeliest outcomes of each bit. A bit has two, so any k of 2 or more "
                             "keeps both (as Infinity's 900 does); 1 always takes the likelier; 0 = off."),
        io.Float.Input("top_p", default=0.97, min=LIMITS["top_p"][0], max=LIMITS["top_p"][1], step=0.01,
                       tooltip="Drop a bit outcome whose probability is under 1 - top_p. 0 = off."),
        io.Combo.Input("aspect", options=aspects, default=_aspect_label(1.0),
                       tooltip="Width:height of the image, one of the 15 shapes Infinity was trained on. "
                               f"custom = the nearest shape to custom_size{from_content}."),
        io.String.Input("custom_size", default="1024x1024",
                        tooltip="Width x height for aspect 'custom'. Only the shape counts: the pixel budget "
                                "sets the size."),
        io.Combo.Input("pixel_budget", options=list(PIXEL_BUDGETS), default="1M",
                       tooltip="Image size: 1M is about 1024x1024 (13 scales), which Infinity-2B and -8B are "
                               "made for; 0.60M, 0.25M and 0.06M stop after 12, 10 and 7 scales. The "
                               "512x512 Infinity-8B model is made for 0.25M."),
    ]


class Sampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfinityStyleSampler",
            display_name="Infinity Scale-wise Sampler",
            category=CATEGORY,
            description="Generates scale by scale (1x1 up to the full grid), with a preview per scale. With Infinity "
                        "Style Prompts it runs the content, style and generation paths; with Infinity Text Encode "
                        "(plain) it is plain text-to-image. Image i of a batch uses seed + i.",
            inputs=[
                ModelIO.Input("model", tooltip="From Infinity Loader."),
                VaeIO.Input("vae", tooltip="From Infinity Loader: encodes style and content images, decodes previews."),
                ConditioningIO.Input("conditioning", tooltip="Infinity Three-Prompt Conditioner (stylized) or "
                                                           "Infinity Text Encode (plain text-to-image)."),
                StyleIO.Input("styles", optional=True, tooltip="Style images from Infinity Style Image Encoder. Not "
                                                             "connected: the style prompt alone is the style."),
                StagesIO.Input("stages", optional=True, tooltip="From Infinity Stage Scheduler. Not connected: the "
                                                              "paper's defaults (key 2,3, fine 4-7, all on)."),
                ContentIO.Input("content", optional=True,
                                tooltip="From Infinity Content Image Encoder, to restyle a picture."),
                RegionsIO.Input("regions", optional=True,
                                tooltip="From Infinity Style Regions: each region of the content painted by the "
                                        "style it resembles. Not connected: the styles mix over the whole image."),
                *sampling_inputs("Random seed. Image i of a batch uses seed + i, so any image can be remade alone.",
                                 with_content=True),
                io.Int.Input("batch_size", default=1, min=LIMITS["batch_size"][0], max=LIMITS["batch_size"][1],
                             tooltip="Images per run, with seeds seed, seed+1, ..."),
            ],
            outputs=[CodesIO.Output(display_name="codes", tooltip="The sampled images before decoding: connect "
                                                                  "Infinity Decode."),
                     io.Image.Output(display_name="region_map",
                                     tooltip="With Infinity Style Regions: the content's regions coloured by the "
                                             "style that paints them, next to the style images.")],
        )

    @classmethod
    @user_errors
    def execute(cls, model, vae, conditioning, seed, cfg, tau, top_k, top_p, aspect, custom_size, pixel_budget,
                batch_size, styles=None, stages=None, content=None, regions=None):
        plan = make_schedule(aspect, custom_size, pixel_budget, content)
        settings = SamplingSettings(cfg=cfg, tau=tau, top_k=top_k, top_p=top_p)
        seeds = seeds_for(seed, batch_size)
        net, guided = model.obj, settings.guided(len(plan))
        vae.obj.check_goes_with(net.config.codebook_dim)
        on_scale = ScaleReporter(vae.obj, plan, batch_size, on_node=stages is None)
        found = []  # each image's style regions, in semantic regions mode

        if isinstance(conditioning, PlainConditioning):
            if styles or stages or content is not None or regions is not None:
                raise InfinityError("A plain prompt (Infinity Text Encode) has no style path: use Infinity "
                                    "Three-Prompt Conditioner with style images, stages, regions or a content "
                                    "image.")
            bridge.load(model, vae, memory_required=_sampling_bytes(net, plan, 1 + guided))  # one image per pass
            text = conditioning.text.select([0] * batch_size)
            summed = generate(net, text, plan, seeds, settings, negative=conditioning.negative,
                              callback=on_scale).summed_codes
        else:
            styles = list(styles or [StyleReference()])  # none connected: a text-only style
            stages = for_model(stages or Stages(), net.config.depth)
            bridge.load(model, vae, memory_required=_sampling_bytes(net, plan, stages.rows_at(len(plan), len(styles), guided)))
            summed = stylize(net, vae.obj, conditioning, styles, stages, plan, seeds, settings, content_image=content,
                             callback=on_scale, regions=regions, on_regions=found.append)
        return io.NodeOutput(Codes(summed.to(bridge.intermediate_device()), plan), region_maps(found),
                             ui=on_scale.ui())
