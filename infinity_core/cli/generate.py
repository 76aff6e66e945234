"""`generate`: plain text-to-image."""
from __future__ import annotations

import argparse

from ..images import decode_images
from ..network.text import check_prompts
from ..sampler import generate
from ..weights.model_files import load_models
from .job import add_common_options, checked_job, save_images

HELP = "plain text-to-image"


def add_options(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser)
    parser.add_argument("--prompt", required=True, help="the image to make")


def run(args) -> int:
    check_prompts([args.prompt])
    job = checked_job(args)
    model, vae, t5 = load_models(job.paths)
    text = t5.encode([args.prompt])
    negative = t5.encode([args.negative]) if args.negative.strip() else None
    codes = generate(model, text.select([0] * len(job.seeds)), job.schedule, job.seeds, job.settings_for(model),
                     negative).summed_codes
    save_images(decode_images(vae, codes), args.out)
    return 0
