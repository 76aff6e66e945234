"""The pack's ComfyUI nodes (V3 schema), one module per family, registered by the extension below."""
from ._api import ComfyExtension
from .comfy_bridge import register_model_folders
from .conditioning import Conditioner, TextEncode
from .decode import Decode
from .loaders import Loader
from .probe import StageProbe
from .regions import StyleRegions
from .sampling import Sampler
from .stages import StageScheduler
from .style_inputs import ContentImageEncoder, StyleImageEncoder

NODES = [Loader, Conditioner, TextEncode, StyleImageEncoder, ContentImageEncoder, StageScheduler, StyleRegions, Sampler,
         Decode, StageProbe]


class InfinityStyleExtension(ComfyExtension):
    async def on_load(self) -> None:
        register_model_folders()

    async def get_node_list(self) -> list:
        return list(NODES)
