"""The Stage Probe node: where do a prompt's words take hold? One image per scale step, in which
only that step sees the alternative prompt (see infinity_core.probe)."""
from __future__ import annotations

import torch

from ..infinity_core.errors import InfinityError
from ..infinity_core.probe import difference_plot, pixel_differences, probe, probe_grid, probe_runs
from ..infinity_core.sampler import SamplingSettings, seeds_for
from . import comfy_bridge as bridge
from ._api import io
from .common import CATEGORY, ModelIO, TextEncoderIO, VaeIO, user_errors
from .conditioning import NEGATIVE_TOOLTIP, _prompt
from .decode import decode_with_progress
from .sampling import ScaleReporter, _sampling_bytes, make_schedule, sampling_inputs


class StageProbe(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfinityStyleStageProbe",
            display_name="Infinity Stage Probe",
            category=CATEGORY,
            description="Shows at which scale steps a prompt takes hold, to choose key and fine steps: a base image, "
                        "then one image per step in which only that step sees the alternative prompt (same seed). "
                        "Costs one plain run per step plus one.",
            inputs=[
                ModelIO.Input("model", tooltip="From Infinity Loader."),
                VaeIO.Input("vae", tooltip="From Infinity Loader: decodes the images and the previews."),
                TextEncoderIO.Input("text_encoder", tooltip="From Infinity Loader."),
                _prompt("base_prompt", "a cat sitting on a windowsill, photograph",
                        "The prompt every step sees, except the probed one."),
                _prompt("alternative_prompt", "a cat sitting on a windowsill, watercolor painting",
                        "The prompt the probed step sees. Change the subject to find where the layout forms, the "
                        "style words to find where palette and texture do."),
                _prompt("negative", "", NEGATIVE_TOOLTIP),
                *sampling_inputs("The one seed of every run, so the images differ only by the probed step.",
                                 with_content=False),
            ],
            outputs=[
                io.Image.Output(display_name="grid", tooltip="The base image, then one tile per step, labelled with "
                                                             "the step, its grid and its difference from the base."),
                io.Image.Output(display_name="plot", tooltip="Mean absolute pixel difference (0-255) of each step's "
                                                             "image from the base image: tall bars are steps where "
                                                             "the alternative prompt still changes the picture."),
                io.Image.Output(display_name="images", tooltip="The images at full size, as a batch: the base "
                                                               "image, then one per step."),
            ],
        )

    @classmethod
    @user_errors
    def execute(cls, model, vae, text_encoder, base_prompt, alternative_prompt, negative, seed, cfg, tau, top_k,
                top_p, aspect, custom_size, pixel_budget):
        if not base_prompt.strip() or not alternative_prompt.strip():
            raise InfinityError("The Stage Probe needs both prompts: a base prompt and the alternative one step "
                                "at a time sees.")
        plan = make_schedule(aspect, custom_size, pixel_budget, None)
        settings = SamplingSettings(cfg=cfg, tau=tau, top_k=top_k, top_p=top_p)
        prompts = [base_prompt.strip(), alternative_prompt.strip()] + ([negative.strip()] if negative.strip() else [])
        bridge.load(text_encoder)
        text = text_encoder.obj.encode(prompts)
        base, alternative = text.select([0]), text.select([1])
        runs = probe_runs(plan)

        bridge.load(model, vae, memory_required=_sampling_bytes(model.obj, plan, 1 + settings.guided(len(plan))))
        on_scale = ScaleReporter(vae.obj, plan, len(runs), on_node=True)
        codes = probe(model.obj, base, alternative, plan, seeds_for(seed, 1)[0], settings,
                      negative=text.select([2]) if len(prompts) == 3 else None, runs=runs,
                      callback=lambda run, event: on_scale(event))
        images = decode_with_progress(vae.obj, torch.cat(codes))

        differences = pixel_differences(images[0], images)
        labels = [run.label(plan) if run.step is None else f"{run.label(plan)}  diff {255 * d:.1f}"
                  for run, d in zip(runs, differences)]
        steps = [run.step for run in runs[1:]]
        out = bridge.intermediate_device()
        return io.NodeOutput(probe_grid(images, labels).to(out), difference_plot(steps, differences[1:]).to(out),
                             images.to(out))
