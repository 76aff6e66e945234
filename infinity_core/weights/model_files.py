"""The three model files of the command lines (generate, stylize, evaluate): where they are looked
for, and loading them checked against each other. ComfyUI's Loader node has its own folders."""
from __future__ import annotations

import os

import torch

from ..errors import InfinityError
from .t5_files import check_text_width, load_text_encoder
from .transformer_file import load_transformer
from .vae_file import load_vae

# slot -> (sub-folder of --models, file names in the README's model table order, flag): the released
# files first, then the unofficial GGUF release's (kzopp/Infinity-2B-GGUF_UNOFFICIAL)
MODEL_FILES = {
    "transformer": ("infinity", ("infinity_2b_reg.pth", "infinity_2b_reg.safetensors", "infinity_8b_weights",
                                 "infinity_2b_reg_Q8_0.gguf"), "--transformer"),
    "vae": ("vae", ("infinity_vae_d32reg.pth", "infinity_vae_d32reg.safetensors",
                    "infinity_vae_d56_f8_14_patchify.pth", "infinity_vae_d32_reg.pth"), "--vae"),
    "t5": ("text_encoders", ("flan-t5-xl", "flan-t5-xl-encoder-Q8_0.gguf"), "--t5"),
}


def find_model_files(models: str | None, given_paths: dict) -> dict[str, str]:
    """Each slot's path: the one given (flag), else the first README name found under `models`.
    Every missing file is listed at once."""
    found, missing = {}, []
    for slot, (sub, names, flag) in MODEL_FILES.items():
        given = given_paths.get(slot)
        if given:
            candidates = [given]
        elif models:
            if slot == "vae" and os.path.isdir(found.get("transformer", "")):
                names = sorted(names, key=lambda n: "patchify" not in n)  # a sharded folder is the 8B release
            candidates = [os.path.join(models, sub, name) for name in names]
        else:
            candidates = []
        path = next((c for c in candidates if os.path.exists(c)), None)
        if path:
            found[slot] = path
        elif given:
            missing.append(f"{flag} {given}: no such file or folder")
        else:
            where = os.path.join(models, sub) if models else f"<models>/{sub}"
            missing.append(f"{' or '.join(names)} in {where}/ (or give {flag})")
    if missing:
        raise InfinityError("Model files not found:\n  " + "\n  ".join(missing) + "\nDownload them as the README's "
                            "model table says and pass --models DIR. To try the pipeline without them, add --tiny "
                            "(a tiny random model set; its images are noise).")
    return found


def load_models(paths: dict):
    """The transformer, its VAE and T5 on the GPU when there is one, each checked against the
    transformer (VAE family, T5 width)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = load_transformer(paths["transformer"], device, dtype)
    vae = load_vae(paths["vae"], device)
    vae.check_goes_with(model.config.codebook_dim)
    t5 = load_text_encoder(paths["t5"], device, torch.float16 if device == "cuda" else torch.float32)
    check_text_width(t5, model.config.text_channels, paths["t5"])
    return model, vae, t5
