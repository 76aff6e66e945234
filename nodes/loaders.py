"""Loading Infinity, its VAE and T5 from ComfyUI's model folders (nothing is ever downloaded)."""
from __future__ import annotations

import os

import torch

from ..infinity_core.errors import InfinityError
from ..infinity_core.text import load_text_encoder
from ..infinity_core.transformer import load_transformer
from ..infinity_core.vae import load_vae
from . import comfy_bridge as bridge
from ._api import io
from .common import CATEGORY, ModelIO, TextEncoderIO, VaeIO, user_errors

PRECISIONS = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def model_path(folder: str, name: str) -> str:
    """The full path of a chosen model, or an InfinityError saying where to put it."""
    path = bridge.find_model(folder, name) if name else None
    if path is None:
        where = " or ".join(bridge.search_dirs(folder))
        what = f"{name!r} was not found" if name else "No file is chosen"
        raise InfinityError(f"{what} for {bridge.MODEL_FOLDERS[folder]}. Put it in {where}, "
                            "then refresh the page.")
    return path


class Loader(io.ComfyNode):
    # File input -> the model folder it lists. A missing file is left to ComfyUI's own list check,
    # which reports it once, on that input (a validate_inputs message would repeat on all three).
    MODEL_INPUTS = {"transformer": "infinity", "vae": "vae", "text_encoder": "text_encoders"}

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfinityStyleLoader",
            display_name="Infinity Loader",
            category=CATEGORY,
            description="Loads the Infinity-2B transformer, its BSQ VAE and the flan-t5-xl text encoder from "
                        "ComfyUI's model folders. Nothing is downloaded: see the README for the files.",
            inputs=[
                io.Combo.Input("transformer", options=bridge.model_files("infinity"),
                               tooltip="The Infinity transformer (infinity_2b_reg.pth), from models/infinity."),
                io.Combo.Input("vae", options=bridge.model_files("vae"),
                               tooltip="The BSQ VAE that goes with it (infinity_vae_d32reg.pth), from models/vae."),
                io.Combo.Input("text_encoder", options=bridge.model_dirs("text_encoders"),
                               tooltip="The flan-t5-xl folder (config.json, tokenizer, weights), from "
                                       "models/text_encoders."),
                io.Combo.Input("precision", options=list(PRECISIONS), default="auto",
                               tooltip="Precision of the transformer blocks. auto = ComfyUI's choice for your device "
                                       "(bf16 where supported, else fp32). The VAE and T5 follow ComfyUI's settings."),
            ],
            outputs=[ModelIO.Output(display_name="model", tooltip="The Infinity transformer, for the sampler."),
                     VaeIO.Output(display_name="vae", tooltip="The BSQ VAE: encodes style and content images, "
                                                              "decodes the result."),
                     TextEncoderIO.Output(display_name="text_encoder", tooltip="flan-t5-xl, for the prompt nodes.")],
        )

    @classmethod
    @user_errors
    def execute(cls, transformer, vae, text_encoder, precision):
        ops = bridge.operations()
        paths = (model_path("infinity", transformer), model_path("vae", vae), model_path("text_encoders", text_encoder))

        device, offload = bridge.devices("transformer")
        weights = os.path.getsize(paths[0]) // 4  # the released file is fp32
        dtype = PRECISIONS[precision] or bridge.auto_dtype("transformer", device, params=weights)
        net = load_transformer(paths[0], device=offload, dtype=dtype, operations=ops)

        device, offload = bridge.devices("vae")
        decoder = load_vae(paths[1], device=offload, dtype=bridge.auto_dtype("vae", device), operations=ops)

        device, offload = bridge.devices("text")
        t5 = load_text_encoder(paths[2], device=offload, dtype=bridge.auto_dtype("text", device))

        return io.NodeOutput(bridge.manage(net, net, "transformer"), bridge.manage(decoder, decoder, "vae"),
                             bridge.manage(t5, t5.model, "text"))
