"""Run Infinity from files, without ComfyUI.

  python -m infinity_core generate --models DIR --prompt "a cat" --out cat.png
  python -m infinity_core stylize --models DIR --content "a cat" --style "watercolor painting" \\
      --style-image ref.png --out cat_watercolor.png

DIR is laid out like ComfyUI's models folder: infinity/infinity_2b_reg.pth, vae/infinity_vae_d32reg.pth,
text_encoders/flan-t5-xl/ (.safetensors copies of the two files work too), or give --transformer/--vae/--t5.
For Infinity-8B: infinity/infinity_8b_weights/ (the sharded folder) and vae/infinity_vae_d56_f8_14_patchify.pth.
--tiny runs a tiny random model set instead, to try the pipeline (its images are noise).
Every value is checked before any model loads.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, replace
from typing import Callable

import torch
from PIL import Image

from . import schedules
from .errors import InfinityError
from .evaluate.cli import add_evaluate_command
from .images import decode_images, load_image, to_pil
from .model_files import MODEL_FILES, find_model_files, load_models
from .regions_cli import add_region_options, region_options
from .sampler import LIMITS, SEED_RANGE, SamplingSettings, check_number, generate, seeds_for
from .style import StyleReference, encode_prompts, generation_prompt, read_stages, stylize

class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default, and the description as written."""


# --- values, checked as the arguments are read -------------------------------------------------------

def _limited(name: str, integer: bool = False) -> Callable[[str], float]:
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


def _seed(text: str) -> int:
    try:
        seeds_for(int(text), 1)
    except (ValueError, InfinityError):
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to 2^64 - 1; got {text!r}") from None
    return int(text)


def _style_image(text: str) -> tuple[str, float]:
    """PATH or PATH=WEIGHT. A path that itself holds '=' is read whole when that file exists."""
    if os.path.isfile(text):
        return text, 1.0
    path, sep, weight = text.rpartition("=")
    if not sep:
        return text, 1.0
    try:
        value = float(weight)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"in {text!r}, the weight {weight!r} after '=' is not a number of 0 or "
                                         "more (write PATH=WEIGHT, such as ref.png=0.5)")
    return path, value


# --- the command line --------------------------------------------------------------------------------

def _common(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--seed", type=_seed, default=0, help=f"0 to 2^64 - 1 ({SEED_RANGE - 1})")
    parser.add_argument("--batch", type=_limited("batch_size", integer=True), default=1,
                        help="images, with seeds seed, seed+1, ... (%s to %s)" % LIMITS["batch_size"])
    parser.add_argument("--cfg", type=_limited("cfg"), default=3.0,
                        help="classifier-free guidance (%s to %s; 1 = off)" % LIMITS["cfg"])
    parser.add_argument("--tau", type=_limited("tau"), default=None,
                        help="sampling temperature (%s to %s); default 0.5 for 2B, 1.0 for 8B (as their own "
                             "examples)" % LIMITS["tau"])
    parser.add_argument("--top-k", type=_limited("top_k", integer=True), default=900,
                        help="keep the k likeliest outcomes of each bit (%s to %s; 0 = off)" % LIMITS["top_k"])
    parser.add_argument("--top-p", type=_limited("top_p"), default=0.97,
                        help="drop a bit outcome under probability 1 - top_p (%s to %s; 0 = off)" % LIMITS["top_p"])
    parser.add_argument("--negative", default="", help="negative prompt; empty = Infinity's learned null text")
    parser.add_argument("--out", required=True, help="output PNG; a batch adds _0, _1, ...")


def _generate_options(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--prompt", required=True, help="the image to make")


def _stylize_options(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--content", required=True, help="what to draw, e.g. 'a cat'")
    parser.add_argument("--style", required=True, help="the style in words, e.g. 'watercolor painting'")
    parser.add_argument("--template", default="{content} in {style}", help="the generated image's prompt")
    parser.add_argument("--style-image", type=_style_image, action="append", default=[],
                        help="a style image, optionally PATH=WEIGHT (weight 0 or more); repeat for several; "
                             "none = the style prompt alone is the style")
    parser.add_argument("--content-image", help="restyle this image instead of sampling the content")
    parser.add_argument("--key-steps", default="2,3", help="key stage steps, 0-based")
    parser.add_argument("--fine-steps", default="4-7", help="fine stage steps, 0-based (not read with --no-aqs)")
    for flag, what in (("init", "Feature Initialization"), ("key", "Key Stage Attention Sharing"),
                       ("aqs", "Adaptive Query Sharing")):
        parser.add_argument(f"--no-{flag}", action="store_true", help=f"turn {what} off")
    add_region_options(parser)


@dataclass
class Command:
    """A subcommand: its help line, how it adds its options, and what it runs (returns the exit code)."""
    help: str
    options: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _run_generate(args) -> int:
    job = _checked_job(args)
    model, vae, t5 = load_models(job.paths)
    text = t5.encode([args.prompt])
    negative = t5.encode([args.negative]) if args.negative.strip() else None
    codes = generate(model, text.select([0] * len(job.seeds)), job.schedule, job.seeds, _settings(job, model),
                     negative).summed_codes
    _save(decode_images(vae, codes), args.out)
    return 0


def _run_stylize(args) -> int:
    job = _checked_job(args)
    generation_prompt(args.content, args.style, args.template)  # the template is checked before loading too
    stages = read_stages(args.key_steps, args.fine_steps, feature_init=not args.no_init, key_sharing=not args.no_key,
                         query_sharing=not args.no_aqs)
    stages.validate(job.schedule, depth=1)  # the command line sets no layer range: the depth is not read
    styles = [StyleReference(load_image(path), weight) for path, weight in args.style_image]
    content = load_image(args.content_image) if args.content_image else None
    regions = region_options(args)
    model, vae, t5 = load_models(job.paths)
    cond = encode_prompts(t5, args.content, args.style, args.template, args.negative)
    codes = stylize(model, vae, cond, styles or [StyleReference(None)], stages, job.schedule, job.seeds,
                    _settings(job, model), content_image=content, **regions)
    _save(decode_images(vae, codes), args.out)
    return 0


# Other commands add an entry here (and, for an option of an existing command, a line in its options).
COMMANDS = {
    "generate": Command("plain text-to-image", _generate_options, _run_generate),
    "stylize": Command("an image of the content in the style of reference images", _stylize_options, _run_stylize),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infinity_core", description=__doc__, formatter_class=_Help)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help, formatter_class=_Help)
        command.options(sub)
        sub.set_defaults(run=command.run)
    add_evaluate_command(commands)  # its options and run live in evaluate/cli.py
    return parser


# --- the run -----------------------------------------------------------------------------------------

@dataclass
class _Job:
    schedule: schedules.Schedule
    settings: SamplingSettings
    seeds: list
    paths: dict  # slot -> model file or folder
    family_tau: bool  # no --tau given: the model family's own temperature applies


def _checked_job(args) -> _Job:
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
    return _Job(schedules.schedule(args.aspect, args.pn), settings, seeds_for(args.seed, args.batch),
                _model_paths(args), family_tau=args.tau is None)


def _settings(job: _Job, model) -> SamplingSettings:
    """The job's settings, with the model family's own temperature when --tau was not given."""
    if not job.family_tau:
        return job.settings
    return replace(job.settings, tau=1.0 if model.config.patchify.factor > 1 else 0.5)


def _model_paths(args) -> dict[str, str]:
    if args.tiny:
        from .tiny import default_cache_dir, write_tiny_models
        paths = write_tiny_models(default_cache_dir())
        print("Using the tiny random model set: THE IMAGES ARE NOISE FROM UNTRAINED WEIGHTS (they show that the "
              "pipeline runs).")
        return {"transformer": paths["transformer"], "vae": paths["vae"], "t5": paths["text_encoder"]}
    return find_model_files(args.models, {slot: getattr(args, slot) for slot in MODEL_FILES})


def _save(images: torch.Tensor, out: str) -> None:
    stem, ext = os.path.splitext(out)
    for i, image in enumerate(images):
        path = out if len(images) == 1 else f"{stem}_{i}{ext or '.png'}"
        to_pil(image).save(path)
        print(f"wrote {path}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except InfinityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
