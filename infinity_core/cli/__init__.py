"""Run Infinity from files, without ComfyUI.

  python -m infinity_core generate --models DIR --prompt "a cat" --out cat.png
  python -m infinity_core stylize --models DIR --content "a cat" --style "watercolor painting" \\
      --style-image ref.png --out cat_watercolor.png
  python -m infinity_core evaluate --models DIR --clip CLIP_DIR --prompts P.csv --styles S.csv --out RUN
  python -m infinity_core gguf infinity_2b_reg.pth infinity_2b_reg-Q8_0.gguf Q8_0

DIR is laid out like ComfyUI's models folder: infinity/infinity_2b_reg.pth, vae/infinity_vae_d32reg.pth,
text_encoders/flan-t5-xl/ (.safetensors copies of the two files work too), or give --transformer/--vae/--t5.
For Infinity-8B: infinity/infinity_8b_weights/ (the sharded folder) and vae/infinity_vae_d56_f8_14_patchify.pth.
The unofficial GGUF release's names are found too: infinity/infinity_2b_reg_Q8_0.gguf,
vae/infinity_vae_d32_reg.pth and text_encoders/flan-t5-xl-encoder-Q8_0.gguf.
--tiny runs a tiny random model set instead, to try the pipeline (its images are noise).
Every value is checked before any model loads.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import InfinityError
from . import evaluate, generate, gguf, stylize

# Each command is a module with HELP, add_options(parser) and run(args) -> exit code; a new
# command is a module and a line here.
COMMANDS = {"generate": generate, "stylize": stylize, "evaluate": evaluate, "gguf": gguf}


class _Help(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default once (not when its help already says it in words, and not for
    an option that is off, empty or not given by default), and the description as written."""

    def _get_help_string(self, action):
        text, default = action.help or "", action.default
        nothing = default is None or default is False or default is argparse.SUPPRESS or default in ("", [])
        if action.option_strings and "default" not in text and not nothing:  # `is False`: 0 is a value
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infinity_core", description=__doc__, formatter_class=_Help)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.HELP, description=getattr(command, "DESCRIPTION", command.HELP),
                                  formatter_class=_Help)
        command.add_options(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except InfinityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
