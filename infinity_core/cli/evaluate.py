"""`python -m infinity_core evaluate`: the paper's measurements (Table 1 / Table 2) from files."""
from __future__ import annotations

import argparse
import os
import sys

import torch

from .. import schedules
from ..errors import InfinityError
from ..evaluate.clip import load_clip
from ..evaluate.protocol import FINESTYLE_TEMPLATE, TABLE2, parse_configuration, read_prompts, read_styles
from ..evaluate.report import write_reports
from ..evaluate.run import CSV_NAME, RunSettings, evaluate
from ..sampler import LIMITS
from ..weights.model_files import MODEL_FILES, find_model_files, load_models
from .job import read_seed

TINY_CLIP = ("clip", "tiny-random-clip")
HELP = "score prompts x styles x configurations with CLIP (the paper's Table 1 and 2)"
DESCRIPTION = ("Make every prompt x style x configuration image, score it with CLIP (S_txt, S_img) and "
               "write scores.csv, summary.md, scatter.png and a contact sheet per configuration. "
               "Run the same command again to resume a stopped run.")


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompts", required=True,
                   help="the FineStyle prompt CSV (content_prompt, superclass, ...) or a text file, one content a line")
    p.add_argument("--styles", required=True, help="a CSV with an image and a style prompt per style")
    p.add_argument("--style-images", help="the folder relative image paths of --styles are in (default: its folder)")
    p.add_argument("--clip", help="a CLIP folder in Hugging Face format, e.g. openai/clip-vit-base-patch32")
    p.add_argument("--models", help="a folder laid out like ComfyUI's models/")
    p.add_argument("--transformer", help="infinity_2b_reg.pth or .safetensors, or an 8B weights folder")
    p.add_argument("--vae", help="infinity_vae_d32reg.pth (2B) or infinity_vae_d56_f8_14_patchify.pth (8B)")
    p.add_argument("--t5", help="the flan-t5-xl folder")
    p.add_argument("--tiny", action="store_true",
                   help="write tiny random models and a tiny CLIP into --models (default <out>/tiny-models) and use "
                        "them: shows the harness end to end; the images are noise and the scores mean nothing")
    p.add_argument("--config", action="append", default=[], metavar="SPEC",
                   help="a Table 2 row: a (baseline), b (+ Feature Initialization), c (+ Key Stage Attention "
                        "Sharing), d (+ Adaptive Query Sharing); or NAME:SETTING=VALUE;... such as "
                        "'late:key=3,4;fine=5-8'. Repeat for several; default a, b, c, d")
    p.add_argument("--out", required=True, help="the run folder (created; an existing run in it is resumed)")
    p.add_argument("--seed", type=read_seed, default=0,
                   help="sample k of prompt i uses seed + i*samples + k (0 to 2^64 - 1; wraps around)")
    p.add_argument("--samples", type=int, default=1, help="images per prompt, style and configuration")
    p.add_argument("--max-prompts", type=int, help="only the first N prompts (a quick look)")
    p.add_argument("--template", default=FINESTYLE_TEMPLATE, help="the generation prompt, from {content} and {style}")
    p.add_argument("--aspect", type=float, default=1.0, help="height / width; the nearest template is used")
    p.add_argument("--pn", default="1M", choices=list(schedules.PIXEL_BUDGETS), help="pixel budget")
    p.add_argument("--cfg", type=float, default=3.0, help="classifier-free guidance (%s to %s; 1 = off)" % LIMITS["cfg"])
    p.add_argument("--tau", type=float, default=0.5, help="sampling temperature (%s to %s)" % LIMITS["tau"])
    p.add_argument("--top-k", type=int, default=900,
                   help="keep the k likeliest outcomes of each bit (%s to %s; 0 = off)" % LIMITS["top_k"])
    p.add_argument("--top-p", type=float, default=0.97,
                   help="drop a bit outcome under probability 1 - top_p (%s to %s; 0 = off)" % LIMITS["top_p"])
    p.add_argument("--sheet", default="4x4", help="prompts x styles on each contact sheet")


def _paths(args) -> dict[str, str]:
    """Model and CLIP paths by kind, from the flags or the models folder."""
    if args.tiny:
        from ..tiny import write_tiny_models
        from ..evaluate.tiny_clip import write_tiny_clip

        folder = args.models or os.path.join(args.out, "tiny-models")
        tiny = write_tiny_models(folder)
        clip = os.path.join(folder, *TINY_CLIP)
        if not os.path.isfile(os.path.join(clip, "model.safetensors")):
            write_tiny_clip(clip)
        print(f"using the tiny random models in {folder}: the images are noise and the scores mean nothing")
        return {"transformer": tiny["transformer"], "vae": tiny["vae"], "t5": tiny["text_encoder"], "clip": clip}
    paths = find_model_files(args.models, {slot: getattr(args, slot) for slot in MODEL_FILES})
    if not args.clip:
        raise InfinityError("Give the CLIP folder with --clip (for the paper's protocol openai/clip-vit-base-patch32 "
                            "in Hugging Face format; see docs/evaluation.md).")
    paths["clip"] = args.clip
    return paths


def _sheet(text: str) -> tuple[int, int]:
    prompts, x, styles = text.lower().partition("x")
    if not (x and prompts.strip().isdigit() and styles.strip().isdigit()):
        raise InfinityError(f"--sheet {text!r}: write PROMPTSxSTYLES, such as 4x4.")
    return int(prompts), int(styles)


def run(args) -> int:
    try:
        for flag in ("samples", "max_prompts"):
            value = getattr(args, flag)
            if value is not None and value < 1:
                raise InfinityError(f"--{flag.replace('_', '-')} must be 1 or more, got {value}.")
        sheet = _sheet(args.sheet)
        prompts = read_prompts(args.prompts)[:args.max_prompts]
        styles = read_styles(args.styles, args.style_images)
        configs = [parse_configuration(spec) for spec in args.config or list(TABLE2)]
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise InfinityError(f"Two configurations are named the same ({', '.join(names)}); give each its own name.")
        schedules.schedule(args.aspect, args.pn)  # a bad aspect fails now, not after loading the models
        settings = RunSettings(args.seed, args.samples, args.cfg, args.tau, args.top_k, args.top_p, args.pn,
                               args.aspect, args.template)
        paths = _paths(args)
        device = "cuda" if torch.cuda.is_available() else "cpu"

        sources = {kind: os.path.basename(os.path.normpath(p)) for kind, p in paths.items()}
        rows = evaluate(args.out, prompts, styles, configs, settings, lambda: load_models(paths),
                        lambda: load_clip(paths["clip"], device), sources)
        described = {c.name: f"{c.label}: {c.describe()}" for c in configs}
        written = write_reports(os.path.abspath(args.out), rows, described, prompts, styles, sources["clip"], sheet)
    except InfinityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nstopped: every finished image is kept and recorded in {os.path.join(args.out, CSV_NAME)}; "
              "run the same command again to go on.", file=sys.stderr)
        return 130
    print(f"wrote {len(rows)} rows to {os.path.join(args.out, CSV_NAME)}, and " + ", ".join(written))
    return 0
