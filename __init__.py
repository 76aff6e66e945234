"""InfinityStyle: training-free style personalization on Infinity-2B, as ComfyUI nodes.

ComfyUI registers the nodes through `comfy_entrypoint` (the V3 extension API). This file stays
import-light: torch and the engine load only when ComfyUI asks for the nodes. WEB_DIRECTORY is the
front-end extension (the Stage Scheduler's stage strip), plain JavaScript with no build step.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import InfinityStyleExtension
    return InfinityStyleExtension()
