"""The one place the pack takes ComfyUI's V3 node API from: `io` and `ComfyExtension`.

Without ComfyUI (tests, run_workflow.py) a minimal mirror of the names the pack uses stands in.
It accepts the same keyword options per input type as ComfyUI 0.8's `comfy_api.latest`, and
refuses others, so a node that builds here also builds in ComfyUI.
"""
from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any, Optional

try:
    from comfy_api.latest import ComfyExtension, io
except ImportError:
    _COMMON = ("display_name", "optional", "tooltip", "lazy")
    _WIDGET = _COMMON + ("default", "socketless")

    class _Input:
        io_type = ""
        allowed: tuple = _COMMON

        def __init__(self, id: str, **options):
            unknown = set(options) - set(self.allowed)
            if unknown:
                raise TypeError(f"{type(self).__qualname__} got unexpected options {sorted(unknown)}")
            self.id = id
            for name in self.allowed:
                setattr(self, name, options.get(name))
            self.optional = bool(self.optional)

    class _Output:
        io_type = ""

        def __init__(self, id: Optional[str] = None, display_name: Optional[str] = None,
                     tooltip: Optional[str] = None, is_output_list: bool = False):
            self.id, self.display_name, self.tooltip = id, display_name, tooltip
            self.is_output_list = is_output_list

    def _comfy_type(io_type: str, widget_options: Optional[tuple] = None):
        """A socket type (widget_options None) or a widget type with its own extra options."""
        allowed = _COMMON if widget_options is None else _WIDGET + widget_options
        return type(io_type, (), {
            "io_type": io_type,
            "Input": type("Input", (_Input,), {"io_type": io_type, "allowed": allowed}),
            "Output": type("Output", (_Output,), {"io_type": io_type}),
        })

    @dataclass
    class _Schema:
        node_id: str
        display_name: Optional[str] = None
        category: str = "sd"
        inputs: list = field(default_factory=list)
        outputs: list = field(default_factory=list)
        hidden: Optional[list] = None
        description: str = ""
        is_output_node: bool = False
        is_experimental: bool = False
        is_deprecated: bool = False

    class _ComfyNode:
        hidden = None

        @classmethod
        def define_schema(cls) -> _Schema:
            raise NotImplementedError

        @classmethod
        def execute(cls, **kwargs):
            raise NotImplementedError

        @classmethod
        def validate_inputs(cls, **kwargs):
            raise NotImplementedError

    class _NodeOutput:
        def __init__(self, *args: Any, ui: Any = None):
            self.args, self.ui = args, ui

        @property
        def result(self):
            return self.args or None

    class ComfyExtension:
        async def on_load(self) -> None:
            pass

        async def get_node_list(self) -> list:
            raise NotImplementedError

    io = types.SimpleNamespace(
        ComfyNode=_ComfyNode, Schema=_Schema, NodeOutput=_NodeOutput,
        Custom=lambda io_type: _comfy_type(io_type),
        Image=_comfy_type("IMAGE"), Mask=_comfy_type("MASK"),
        Int=_comfy_type("INT", ("min", "max", "step", "control_after_generate", "display_mode", "force_input")),
        Float=_comfy_type("FLOAT", ("min", "max", "step", "round", "display_mode", "force_input")),
        String=_comfy_type("STRING", ("multiline", "placeholder", "dynamic_prompts", "force_input")),
        Boolean=_comfy_type("BOOLEAN", ("label_on", "label_off", "force_input")),
        Combo=_comfy_type("COMBO", ("options", "control_after_generate", "upload", "image_folder", "remote")),
    )

__all__ = ["ComfyExtension", "io"]
