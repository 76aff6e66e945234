"""Loading Infinity, its VAE and T5 from ComfyUI's model folders (nothing is ever downloaded)."""
from __future__ import annotations

import torch

from ..infinity_core.errors import InfinityError
from ..infinity_core.memory_plan import plan_tooltip
from ..infinity_core.weights.checkpoint import is_gguf
from ..infinity_core.weights.sharded import checkpoint_bytes
from ..infinity_core.weights.t5_files import check_text_width, load_text_encoder
from ..infinity_core.weights.transformer_file import load_transformer
from ..infinity_core.weights.vae_file import load_vae
from . import comfy_bridge as bridge
from ._api import io
from .common import CATEGORY, ModelIO, TextEncoderIO, VaeIO, user_errors

FP8 = "fp8_e4m3fn"
# precision -> compute dtype of the blocks (None: ComfyUI's choice); fp8 stores and computes apart
PRECISIONS = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, FP8: None}


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
            description="Loads an Infinity transformer (2B, or 8B at 1024 or 512 px), its BSQ VAE and the flan-t5-xl "
                        "text encoder from ComfyUI's model folders. Nothing is downloaded: see the README for the "
                        "files and which to get for your GPU.",
            inputs=[
                io.Combo.Input("transformer", options=bridge.model_checkpoints("infinity"),
                               tooltip="The Infinity transformer, from models/infinity: infinity_2b_reg.pth, or an "
                                       "8B weights folder as downloaded (infinity_8b_weights or "
                                       "infinity_8b_512x512_weights: shards and their index file). A .gguf file "
                                       "(infinity_2b_reg_Q8_0.gguf as published, or one you made) stays quantized on "
                                       "the GPU; see the pack's docs/memory.md. " + plan_tooltip()),
                io.Combo.Input("vae", options=bridge.model_files("vae"),
                               tooltip="The BSQ VAE that goes with it, from models/vae: infinity_vae_d32reg.pth for "
                                       "2B (the GGUF release calls it infinity_vae_d32_reg.pth), "
                                       "infinity_vae_d56_f8_14_patchify.pth for 8B."),
                io.Combo.Input("text_encoder", options=bridge.text_encoder_choices(),
                               tooltip="The flan-t5-xl folder (config.json, tokenizer, weights), from "
                                       "models/text_encoders, or a T5 encoder .gguf file: flan-t5-xl-encoder-Q8_0.gguf "
                                       "as published carries its own tokenizer and works alone; a .gguf of weights "
                                       "only is read with the config.json and tokenizer of the folder it is in."),
                io.Combo.Input("precision", options=list(PRECISIONS), default="auto",
                               tooltip="Precision of the transformer blocks. auto = ComfyUI's choice for your device "
                                       "(bf16 where supported, else fp32). fp8_e4m3fn stores their weights in 8 bits "
                                       "(half of bf16) and computes in ComfyUI's choice. A .gguf transformer keeps its "
                                       "own quantization. The VAE and T5 follow ComfyUI's settings."),
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
        weights = checkpoint_bytes(paths[0]) // 4  # parameters, if stored in fp32 as the 2B release is
        dtype = PRECISIONS[precision] or bridge.auto_dtype("transformer", device, params=weights)
        storage = torch.float8_e4m3fn if precision == FP8 else None
        kind = "gguf" if is_gguf(paths[0]) else "fp8" if storage else "plain"
        net = load_transformer(paths[0], device=offload, dtype=dtype, operations=bridge.operations(kind),
                               storage=storage)

        device, offload = bridge.devices("vae")
        decoder = load_vae(paths[1], device=offload, dtype=bridge.auto_dtype("vae", device), operations=ops)
        decoder.check_goes_with(net.config.codebook_dim)  # before the text encoder's load

        device, offload = bridge.devices("text")
        t5 = load_text_encoder(paths[2], device=offload, dtype=bridge.auto_dtype("text", device))
        check_text_width(t5, net.config.text_channels, paths[2])

        return io.NodeOutput(bridge.manage(net, net, "transformer"), bridge.manage(decoder, decoder, "vae"),
                             bridge.manage(t5, t5.model, "text"))
