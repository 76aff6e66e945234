"""What the generating commands (generate, stylize) share: the options every one takes, each value
checked as the arguments are read, the model files, and writing the images."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from typing import Callable

import torch
from PIL import Image

from .. import schedules
from ..errors import InfinityError
from ..images import to_pil
from ..sampler import LIMITS, SEED_RANGE, SamplingSettings, check_number, seeds_for
from ..weights.model_files import MODEL_FILES, find_model_files

# --- values, checked as the arguments are read -------------------------------------------------------

def limited(name: str, integer: bool = False) -> Callable[[str], float]:
    """An argparse type refusing what the Sampler node's widget for `name` refuses."""
    def read(text: str):
        try:
            value = int(text) if integer else float(text)
            check_number(name, value, integer)
        except (ValueError, InfinityError) as exc:
            bad = exc if isinstance(exc, InfinityError) else f"{text!r} is not a {'whole ' if integer else ''}number"
            raise argparse.ArgumentTypeError(str(bad)) from None
        return value
    return read


def read_seed(text: str) -> int:
    """An argparse type: a seed the Sampler node's widget takes (0 to 2^64 - 1)."""
    try:
        seeds_for(int(text), 1)
    except (ValueError, InfinityError):
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to 2^64 - 1; got {text!r}") from None
    return int(text)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    files = parser.add_argument_group("model files (all three, or --tiny)")
    files.add_argument("--models", help="a folder laid out like ComfyUI's models/ (infinity/, vae/, text_encoders/)")
    for slot, (sub, names, flag) in MODEL_FILES.items():
        files.add_argument(flag, help=f"{names[0]} (instead of looking in --models {sub}/)")
    files.add_argument("--tiny", action="store_true",
                       help="use a tiny random model set (built once in a cache folder) to try the pipeline; "
                            "its images are noise")
    parser.add_argument("--aspect", type=float, default=1.0, help="height / width; the nearest trained shape is used")
    parser.add_argument("--pn", default="1M", choices=list(schedules.PIXEL_BUDGETS),
                        help="pixel budget: 1M is about 1024x1024")
    parser.add_argument("--seed", type=read_seed, default=0, help=f"0 to 2^64 - 1 ({SEED_RANGE - 1})")
    parser.add_argument("--batch", type=limited("batch_size", integer=True), default=1,
                        help="images, with seeds seed, seed+1, ... (%s to %s)" % LIMITS["batch_size"])
    parser.add_argument("--cfg", type=limited("cfg"), default=3.0,
                        help="classifier-free guidance (%s to %s; 1 = off)" % LIMITS["cfg"])
    parser.add_argument("--tau", type=limited("tau"), default=None,
                        help="sampling temperature (%s to %s); default 0.5 for 2B, 1.0 for 8B (as their own "
                             "examples)" % LIMITS["tau"])
    parser.add_argument("--top-k", type=limited("top_k", integer=True), default=900,
                        help="keep the k likeliest outcomes of each bit (%s to %s; 0 = off)" % LIMITS["top_k"])
    parser.add_argument("--top-p", type=limited("top_p"), default=0.97,
                        help="drop a bit outcome under probability 1 - top_p (%s to %s; 0 = off)" % LIMITS["top_p"])
    parser.add_argument("--negative", default="", help="negative prompt; empty = Infinity's learned null text")
    parser.add_argument("--out", required=True, help="output PNG; a batch adds _0, _1, ...")


# --- the run -----------------------------------------------------------------------------------------

@dataclass
class Job:
    schedule: schedules.Schedule
    settings: SamplingSettings
    seeds: list
    paths: dict  # slot -> model file or folder
    family_tau: bool  # no --tau given: the model family's own temperature applies

    def settings_for(self, model) -> SamplingSettings:
        """The job's settings, with the model family's own temperature when --tau was not given."""
        if not self.family_tau:
            return self.settings
        return replace(self.settings, tau=1.0 if model.config.patchify.factor > 1 else 0.5)


def checked_job(args) -> Job:
    """What every generating command checks before loading anything: sizes, sampling, output."""
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if os.path.isdir(args.out):
        raise InfinityError(f"--out {args.out} is a folder: give a file name such as "
                            f"{os.path.join(args.out, 'image.png')}.")
    if not os.path.isdir(out_dir):
        raise InfinityError(f"--out {args.out}: the folder {out_dir} does not exist; create it first.")
    ext = os.path.splitext(args.out)[1].lower()
    if ext and ext not in Image.registered_extensions():
        raise InfinityError(f"--out {args.out}: {ext} is not an image format; use .png.")
    settings = SamplingSettings(args.cfg, 0.5 if args.tau is None else args.tau, args.top_k, args.top_p)
    return Job(schedules.schedule(args.aspect, args.pn), settings, seeds_for(args.seed, args.batch),
               _model_paths(args), family_tau=args.tau is None)


def _model_paths(args) -> dict[str, str]:
    if args.tiny:
        from ..tiny import default_cache_dir, write_tiny_models
        paths = write_tiny_models(default_cache_dir())
        print("Using the tiny random model set: THE IMAGES ARE NOISE FROM UNTRAINED WEIGHTS (they show that the "
              "pipeline runs).")
        return {"transformer": paths["transformer"], "vae": paths["vae"], "t5": paths["text_encoder"]}
    return find_model_files(args.models, {slot: getattr(args, slot) for slot in MODEL_FILES})


def save_images(images: torch.Tensor, out: str) -> None:
    stem, ext = os.path.splitext(out)
    for i, image in enumerate(images):
        path = out if len(images) == 1 else f"{stem}_{i}{ext or '.png'}"
        to_pil(image).save(path)
        print(f"wrote {path}")
