"""`stylize`: an image of the content in the style of reference images (the paper's method)."""
from __future__ import annotations

import argparse
import math
import os

from ..images import decode_images, load_image
from ..style import StyleReference, encode_prompts, read_stages, stylize
from ..style.prompts import prompt_texts
from ..weights.model_files import load_models
from .job import add_common_options, checked_job, save_images
from .regions import add_region_options, region_options

HELP = "an image of the content in the style of reference images"


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


def add_options(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser)
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


def run(args) -> int:
    job = checked_job(args)
    prompt_texts(args.content, args.style, args.template, args.negative)
    stages = read_stages(args.key_steps, args.fine_steps, feature_init=not args.no_init, key_sharing=not args.no_key,
                         query_sharing=not args.no_aqs)
    stages.validate(job.schedule, depth=None)
    styles = [StyleReference(load_image(path), weight) for path, weight in args.style_image]
    content = load_image(args.content_image) if args.content_image else None
    regions = region_options(args, styles or [StyleReference(None)])
    model, vae, t5 = load_models(job.paths)
    cond = encode_prompts(t5, args.content, args.style, args.template, args.negative)
    codes = stylize(model, vae, cond, styles or [StyleReference(None)], stages, job.schedule, job.seeds,
                    job.settings_for(model), content_image=content, **regions)
    save_images(decode_images(vae, codes), args.out)
    return 0
