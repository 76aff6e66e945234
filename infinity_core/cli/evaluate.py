"""`python -m infinity_core evaluate`: the paper's measurements (Table 1 / Table 2) from files, in one
process, as the ranks of `torchrun --nproc-per-node N -m infinity_core evaluate ...`, or as the
jobs of an array (--shard K/N, then --merge). Every value is checked before any model loads."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from .. import schedules
from ..errors import InfinityError
from ..evaluate.clip import load_clip
from ..evaluate.launch import Launch, from_environment, joined, parse_shard
from ..evaluate.protocol import FINESTYLE_TEMPLATE, TABLE2, parse_configuration, read_prompts, read_styles
from ..evaluate.report import write_reports
from ..evaluate.run import evaluate, merge_run
from ..evaluate.settings import PRESETS, S_TXT, RunSettings, resolve
from ..sampler import LIMITS, SamplingSettings
from ..style import generation_prompt
from ..weights.model_files import MODEL_FILES, find_model_files, load_models
from .job import limited, read_seed

TINY_CLIP = ("clip", "tiny-random-clip")
HELP = "score prompts x styles x configurations with CLIP (the paper's Table 1 and 2)"
DESCRIPTION = ("Make every prompt x style x configuration image, score it with CLIP (S_txt two ways, S_img) and "
               "write scores.csv, summary.md, scatter.png and a contact sheet per configuration. Run the same "
               "command again to resume a stopped run. On N GPUs: torchrun --nproc-per-node N -m infinity_core "
               "evaluate ...; in a job array: --shard K/N in each job, then the same command with --merge.")


def _preset_help(key: str, what: str) -> str:
    """The help of an option whose default is its preset's value (the default preset's first)."""
    others = "; ".join(f"with --preset {name} {getattr(preset, key)}" for name, preset in PRESETS.items()
                       if name != "paper")
    return f"{what}; {others} (default: {getattr(PRESETS['paper'], key)})"


def add_options(p: argparse.ArgumentParser) -> None:
    unset = argparse.SUPPRESS  # not given: the preset's value (and no "(default: None)" in the help)
    p.add_argument("--prompts", required=True,
                   help="the FineStyle prompt CSV (content_prompt, superclass, ...) or a text file, one content a line")
    p.add_argument("--styles", required=True,
                   help="a styles CSV: the published 10- or 21-style file as it is, or columns image, style")
    p.add_argument("--style-images", help="the folder relative image paths of --styles start from; when not given, "
                                          "the CSV's folder (for style_reference_image, the folder above it)")
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
    p.add_argument("--preset", choices=list(PRESETS), default="paper",
                   help="; ".join(f"{name}: {preset.about}, pn {preset.pn}, cfg {preset.cfg:g}, tau {preset.tau:g}, "
                                  f"top_k {preset.top_k}, top_p {preset.top_p:g}, seed {preset.seed}, S_txt "
                                  f"{preset.s_txt}" for name, preset in PRESETS.items())
                        + ". An option given on its own overrides its preset's value")
    p.add_argument("--s-txt", choices=list(S_TXT), default=unset,
                   help=_preset_help("s_txt", "the S_txt reading the report leads with: content = against "
                                              "'a cat, animals', prompt = against the whole generation prompt; "
                                              "scores.csv always holds both"))
    p.add_argument("--seed", type=read_seed, default=unset,
                   help=_preset_help("seed", "sample k of prompt i uses seed + i*samples + k"))
    p.add_argument("--samples", type=int, default=1, help="images per prompt, style and configuration")
    p.add_argument("--max-prompts", type=int, help="only the first N prompts (a quick look)")
    p.add_argument("--template", default=FINESTYLE_TEMPLATE, help="the generation prompt, from {content} and {style}")
    p.add_argument("--aspect", type=float, default=1.0, help="height / width; the nearest template is used")
    p.add_argument("--pn", choices=list(schedules.PIXEL_BUDGETS), default=unset, help=_preset_help("pn", "pixel budget"))
    p.add_argument("--cfg", type=limited("cfg"), default=unset,
                   help=_preset_help("cfg", "classifier-free guidance (%s to %s; 1 = off)" % LIMITS["cfg"]))
    p.add_argument("--tau", type=limited("tau"), default=unset,
                   help=_preset_help("tau", "sampling temperature (%s to %s)" % LIMITS["tau"]))
    p.add_argument("--top-k", type=limited("top_k", integer=True), default=unset,
                   help=_preset_help("top_k", "keep the k likeliest outcomes of each bit (%s to %s; 0 = off)"
                                     % LIMITS["top_k"]))
    p.add_argument("--top-p", type=limited("top_p"), default=unset,
                   help=_preset_help("top_p", "drop a bit outcome under probability 1 - top_p (%s to %s; 0 = off)"
                                     % LIMITS["top_p"]))
    p.add_argument("--sheet", default="4x4", help="prompts x styles on each contact sheet")
    p.add_argument("--shard", metavar="K/N",
                   help="make only share K of N (cells i with i mod N = K-1), for job arrays that are not torchrun "
                        "(Slurm: --shard $((SLURM_ARRAY_TASK_ID + 1))/$SLURM_ARRAY_TASK_COUNT); each share resumes "
                        "on its own. When all are done, run the same command with --merge instead")
    p.add_argument("--merge", action="store_true",
                   help="make nothing: merge the shares' rows into scores.csv and write the report (after --shard "
                        "jobs)")


def _check_out(out: str) -> None:
    """The run folder is an existing folder or can be made."""
    path = os.path.abspath(out)
    if os.path.exists(path) and not os.path.isdir(path):
        raise InfinityError(f"--out {out} is a file; the run folder must be a new folder or an earlier run's.")
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise InfinityError(f"--out {out}: {parent} is a file, so no folder can be made inside it; choose another "
                            "path.")
    if not os.access(parent, os.W_OK):
        raise InfinityError(f"--out {out}: {parent} is not writable; choose a folder you can write to.")


def _paths(args, announce: bool) -> dict[str, str]:
    """Model and CLIP paths by kind, from the flags or the models folder."""
    if args.tiny:
        from ..evaluate.tiny_clip import write_tiny_clip
        from ..tiny import write_tiny_models

        folder = args.models or os.path.join(args.out, "tiny-models")
        tiny = write_tiny_models(folder)
        clip = os.path.join(folder, *TINY_CLIP)
        if not os.path.isfile(os.path.join(clip, "model.safetensors")):
            write_tiny_clip(clip)
        if announce:
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


def _launch(args) -> Launch:
    torchrun = from_environment()
    if args.merge and (torchrun or args.shard):
        raise InfinityError("--merge runs in one process, after the shards: give it without --shard and outside "
                            "torchrun.")
    if args.shard:
        if torchrun:
            raise InfinityError("--shard is for launchers other than torchrun; under torchrun each rank takes its "
                                "share by itself.")
        return parse_shard(args.shard)
    return torchrun or Launch()


class _Checked:
    """Everything the command line says, read and checked; nothing is loaded."""

    def __init__(self, args):
        for flag in ("samples", "max_prompts"):
            value = getattr(args, flag)
            if value is not None and value < 1:
                raise InfinityError(f"--{flag.replace('_', '-')} must be 1 or more, got {value}.")
        _check_out(args.out)
        self.sheet = _sheet(args.sheet)
        every_prompt = read_prompts(args.prompts)
        self.prompts, self.prompts_in_file = every_prompt[:args.max_prompts], len(every_prompt)
        self.styles = read_styles(args.styles, args.style_images)
        self.configs = [parse_configuration(spec) for spec in args.config or list(TABLE2)]
        names = [c.name for c in self.configs]
        if len(set(names)) != len(names):
            raise InfinityError(f"Two configurations are named the same ({', '.join(names)}); give each its own name.")
        given = {key: getattr(args, key, None) for key in ("pn", "cfg", "tau", "top_k", "top_p", "seed", "s_txt")}
        self.values, self.changed = resolve(args.preset, given)
        self.preset, self.headline = args.preset, self.values["s_txt"]
        self.settings = RunSettings(samples=args.samples, aspect=args.aspect, template=args.template,
                                    **{k: v for k, v in self.values.items() if k != "s_txt"})
        schedule = schedules.schedule(args.aspect, self.settings.pn)
        SamplingSettings(self.settings.cfg, self.settings.tau, self.settings.top_k, self.settings.top_p)
        for config in self.configs:  # the layer range waits for the model: its depth is in the file
            replace(config.stages, layers=None).validate(schedule, depth=1)
        generation_prompt(self.prompts[0].content, self.styles[0].text, args.template)  # refuses a bad template
        self.described = self._describe(args, schedule)

    def _describe(self, args, schedule) -> list[tuple[str, str]]:
        """Every setting of the run, for summary.md and the plot."""
        s, preset = self.settings, PRESETS[self.preset]
        changed = "".join(f"; {key} {self.values[key]} given (preset: {getattr(preset, key)})" for key in self.changed)
        height, width = schedule.image_hw
        counted = f"{len(self.prompts)} of {self.prompts_in_file}"
        return [("preset", f"{self.preset}: {preset.about}{changed}"),
                ("pixel budget", f"{s.pn} ({width}x{height}, aspect {s.aspect:g})"),
                ("cfg", f"{s.cfg:g}"), ("tau", f"{s.tau:g}"), ("top_k", str(s.top_k)), ("top_p", f"{s.top_p:g}"),
                ("seed", f"{s.seed} (sample k of prompt i: seed + i x {s.samples} + k)"), ("samples", str(s.samples)),
                ("generation prompt", f"`{s.template}`"), ("headline S_txt", self.headline),
                ("prompts", f"{args.prompts} ({counted})"), ("styles", f"{args.styles} ({len(self.styles)} used)"),
                ("configurations", ", ".join(c.name for c in self.configs))]


def run(args) -> int:
    launch = Launch()
    try:
        launch = _launch(args)
        checked = _Checked(args)
        if args.merge:
            sources = _sources(_paths(args, announce=True))
            rows = merge_run(args.out, checked.prompts, checked.styles, checked.configs, checked.settings, sources)
            return _report(args, checked, rows, sources)
        with joined(launch) as device:
            paths = launch.first(lambda: _paths(args, announce=launch.leads))
            sources = _sources(paths)
            rows = evaluate(args.out, checked.prompts, checked.styles, checked.configs, checked.settings,
                            lambda: load_models(paths), lambda: load_clip(paths["clip"], device), sources,
                            launch=launch)
            if rows is not None:
                return _report(args, checked, rows, sources)
        if launch.kind == "shard":
            print(f"{launch.label}: every image of this share is made. When every shard is done, run the same "
                  "command with --merge instead of --shard.")
        return 0
    except InfinityError as exc:
        where = f" ({launch.label})" if launch.label else ""
        print(f"error{where}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if launch.leads or launch.kind == "shard":
            print(f"\nstopped: every finished image is kept and recorded in {args.out}; run the same command again "
                  "to go on.", file=sys.stderr)
        return 130


def _sources(paths: dict[str, str]) -> dict[str, str]:
    return {kind: os.path.basename(os.path.normpath(p)) for kind, p in paths.items()}


def _report(args, checked: _Checked, rows: list[dict], sources: dict[str, str]) -> int:
    settings = checked.described + [(kind, f"`{name}`") for kind, name in sources.items()]
    written = write_reports(os.path.abspath(args.out), rows, checked.configs, checked.prompts, checked.styles,
                            checked.headline, settings, checked.sheet)
    print(f"wrote {len(rows)} rows to {os.path.join(args.out, 'scores.csv')}, and " + ", ".join(written))
    return 0
