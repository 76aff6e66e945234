"""What every node family shares: the socket types, the menu category, and how errors reach the user."""
from __future__ import annotations

import functools

from ..infinity_core.errors import InfinityError
from ._api import io

CATEGORY = "InfinityStyle"

ModelIO = io.Custom("INFINITY_MODEL")              # comfy_bridge.Managed(InfinityTransformer)
VaeIO = io.Custom("INFINITY_VAE")                  # comfy_bridge.Managed(BSQVAE)
TextEncoderIO = io.Custom("INFINITY_TEXT_ENCODER")  # comfy_bridge.Managed(T5TextEncoder)
ConditioningIO = io.Custom("INFINITY_CONDITIONING")  # StyleConditioning or conditioning.PlainConditioning
StyleIO = io.Custom("INFINITY_STYLE")              # tuple of StyleReference
ContentIO = io.Custom("INFINITY_CONTENT")          # one content IMAGE [H, W, C]
StagesIO = io.Custom("INFINITY_STAGES")            # infinity_core.style.Stages
RegionsIO = io.Custom("INFINITY_REGIONS")          # infinity_core.style.Regions, or None for the global mix
CodesIO = io.Custom("INFINITY_CODES")              # sampling.Codes


def user_errors(execute):
    """An InfinityError reaches the user as its message with a one-frame trace: the engine's
    stack below the node tells an artist nothing."""
    @functools.wraps(execute)
    def run(cls, **inputs):
        try:
            return execute(cls, **inputs)
        except InfinityError as exc:
            raise exc.with_traceback(None) from None
    return run
