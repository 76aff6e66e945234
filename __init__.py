"""InfinityStyle: training-free style personalization on Infinity-2B, as ComfyUI nodes.

ComfyUI registers the nodes through `comfy_entrypoint` (the V3 extension API). This file stays
import-light: torch and the engine load only when ComfyUI asks for the nodes.
"""


async def comfy_entrypoint():
    from .nodes import InfinityStyleExtension
    return InfinityStyleExtension()
