"""Run Infinity from files, without ComfyUI.

  python -m infinity_core generate --models DIR --prompt "a cat" --out cat.png
  python -m infinity_core stylize --models DIR --content "a cat" --style "watercolor painting" \\
      --style-image ref.png --out cat_watercolor.png

DIR is laid out like ComfyUI's models folder: infinity/infinity_2b_reg.(pth|safetensors),
vae/infinity_vae_d32reg.pth, text_encoders/flan-t5-xl/ (or give --transformer/--vae/--t5).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from . import schedules
from .errors import InfinityError
from .evaluate.cli import add_evaluate_command
from .images import decode_images, load_image, to_pil
from .sampler import SamplingSettings, generate
from .style import Stages, StyleReference, encode_prompts, parse_steps, stylize
from .text import load_text_encoder
from .transformer import load_transformer
from .vae import load_vae


def _find(models: str | None, given: str | None, sub: str, names: tuple[str, ...]) -> str:
    if given:
        return given
    if models:
        for name in names:
            path = os.path.join(models, sub, name)
            if os.path.exists(path):
                return path
    raise InfinityError(f"No {names[0]} found: put it in {os.path.join(models or '<models>', sub)}/ "
                        f"or pass its path (see the README's model table).")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", help="a folder laid out like ComfyUI's models/")
    parser.add_argument("--transformer", help="infinity_2b_reg.pth or .safetensors")
    parser.add_argument("--vae", help="infinity_vae_d32reg.pth")
    parser.add_argument("--t5", help="the flan-t5-xl folder")
    parser.add_argument("--aspect", type=float, default=1.0, help="height / width; the nearest template is used")
    parser.add_argument("--pn", default="1M", choices=list(schedules.PIXEL_BUDGETS), help="pixel budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1, help="images, with seeds seed, seed+1, ...")
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--tau", type=float, default=0.5)
    parser.add_argument("--top-k", type=int, default=900)
    parser.add_argument("--top-p", type=float, default=0.97)
    parser.add_argument("--negative", default="")
    parser.add_argument("--out", required=True, help="output PNG; a batch adds _0, _1, ...")


def _models(args):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = load_transformer(_find(args.models, args.transformer, "infinity",
                                   ("infinity_2b_reg.safetensors", "infinity_2b_reg.pth")), device, dtype)
    vae = load_vae(_find(args.models, args.vae, "vae", ("infinity_vae_d32reg.pth", "infinity_vae_d32reg.safetensors")),
                   device)
    t5 = load_text_encoder(_find(args.models, args.t5, "text_encoders", ("flan-t5-xl",)), device,
                           torch.float16 if device == "cuda" else torch.float32)
    return model, vae, t5


def _save(images: torch.Tensor, out: str) -> None:
    stem, ext = os.path.splitext(out)
    for i, image in enumerate(images):
        path = out if len(images) == 1 else f"{stem}_{i}{ext or '.png'}"
        to_pil(image).save(path)
        print(f"wrote {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infinity_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    plain = commands.add_parser("generate", help="plain text-to-image")
    _common(plain)
    plain.add_argument("--prompt", required=True)
    styled = commands.add_parser("stylize", help="an image of the content in the style of reference images")
    _common(styled)
    styled.add_argument("--content", required=True, help="what to draw, e.g. 'a cat'")
    styled.add_argument("--style", required=True, help="the style in words, e.g. 'watercolor painting'")
    styled.add_argument("--template", default="{content} in {style}")
    styled.add_argument("--style-image", action="append", default=[],
                        help="a style image, optionally PATH=WEIGHT; repeat for several; none = text-only style")
    styled.add_argument("--content-image", help="restyle this image instead of sampling the content")
    styled.add_argument("--key-steps", default="2,3")
    styled.add_argument("--fine-steps", default="4-7")
    for flag, what in (("init", "Feature Initialization"), ("key", "Key Stage Attention Sharing"),
                       ("aqs", "Adaptive Query Sharing")):
        styled.add_argument(f"--no-{flag}", action="store_true", help=f"turn {what} off")
    add_evaluate_command(commands)
    args = parser.parse_args(argv)
    if args.command == "evaluate":
        return args.run(args)
    try:
        model, vae, t5 = _models(args)
        schedule = schedules.schedule(args.aspect, args.pn)
        settings = SamplingSettings(args.cfg, args.tau, args.top_k, args.top_p)
        seeds = [args.seed + i for i in range(args.batch)]
        if args.command == "generate":
            text = t5.encode([args.prompt])
            negative = t5.encode([args.negative]) if args.negative.strip() else None
            codes = generate(model, text.select([0] * len(seeds)), schedule, seeds, settings, negative).summed_codes
        else:
            styles = []
            for spec in args.style_image:
                path, _, weight = spec.partition("=")
                styles.append(StyleReference(load_image(path), float(weight or 1)))
            stages = Stages(parse_steps(args.key_steps), parse_steps(args.fine_steps), not args.no_init,
                            not args.no_key, not args.no_aqs)
            cond = encode_prompts(t5, args.content, args.style, args.template, args.negative)
            content = load_image(args.content_image) if args.content_image else None
            codes = stylize(model, vae, cond, styles or [StyleReference(None)], stages, schedule, seeds, settings,
                            content_image=content)
        _save(decode_images(vae, codes), args.out)
    except InfinityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
