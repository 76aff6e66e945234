"""`gguf`: a GGUF file of a transformer checkpoint, for the Loader's low-VRAM option."""
from __future__ import annotations

import argparse
import os

from ..errors import InfinityError
from ..weights.checkpoint import read_state_dict
from ..weights.gguf_file import QUANTIZABLE, write_gguf
from ..weights.sharded import read_sharded_state_dict
from ..weights.transformer_file import require_transformer

HELP = "write a transformer checkpoint as a GGUF file (Q8_0, Q5_1, Q5_0, Q4_1, Q4_0 or BF16)"
DESCRIPTION = (HELP + ". Matrices whose rows split into whole blocks are quantized, everything else is kept in F32, "
               "under the checkpoint's own tensor names, which the Loader reads (with or without ComfyUI-GGUF).")
# K-quants the gguf package can read but not write -> the type to make instead (the next larger it writes)
K_QUANTS = {"Q6_K": "Q8_0", "Q5_K": "Q5_1", "Q4_K": "Q4_1"}


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="the transformer: infinity_2b_reg.pth or .safetensors, or an 8B weights folder")
    parser.add_argument("target", help="the GGUF file to write, e.g. infinity_2b_reg-Q8_0.gguf (never overwritten)")
    parser.add_argument("type", metavar="TYPE", choices=QUANTIZABLE + tuple(K_QUANTS),
                        help=f"one of {', '.join(QUANTIZABLE)}: Q8_0 is closest to the original, Q4_0 the smallest")


def run(args) -> int:
    if args.type in K_QUANTS:
        raise InfinityError(f"{args.type} cannot be written here: the gguf package quantizes only "
                            f"{', '.join(QUANTIZABLE)}. Use {K_QUANTS[args.type]} instead, the nearest of those.")
    if os.path.exists(args.target):
        raise InfinityError(f"{args.target} exists; not overwriting it. Give another name or delete it first.")
    folder = os.path.dirname(os.path.abspath(args.target))
    if not os.path.isdir(folder):
        raise InfinityError(f"{args.target}: the folder {folder} does not exist; create it first.")
    if os.path.isdir(args.source):
        state = read_sharded_state_dict(args.source)
    else:
        state = read_state_dict(args.source)
    require_transformer(args.source, state)
    print(f"writing {args.target} ({len(state)} tensors)...", flush=True)
    part = args.target + ".part"
    try:
        written = write_gguf(part, state, args.type)
        os.replace(part, args.target)
    finally:
        if os.path.exists(part):
            os.remove(part)
    kept = sum(t == "F32" for t in written.values())
    print(f"wrote {args.target}: {len(written) - kept} tensors in {args.type}, {kept} in F32")
    return 0
