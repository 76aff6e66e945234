"""The golden cases: vectors the reference implementation computed on tiny random models.

Cases come from the folder named by INFINITY_GOLDEN_DIR (default: tests/golden, a copy of
shared/golden). Each case is <name>.json + <name>.safetensors; see FORMAT.md there.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

DEFAULT_DIR = Path(__file__).parent / "golden"


def golden_dir() -> Path:
    return Path(os.environ.get("INFINITY_GOLDEN_DIR", DEFAULT_DIR))


def case_names() -> list[str]:
    """Every case in the golden folder; a missing or empty folder yields a failing placeholder."""
    folder = golden_dir()
    names = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    return names or [f"<no cases in {folder}>"]


@dataclass
class Case:
    name: str
    meta: dict
    tensors: dict

    def part(self, prefix: str) -> dict:
        """The tensors under `prefix.`, upcast to fp32 (the file stores exact fp16 values)."""
        n = len(prefix) + 1
        return {k[n:]: (v.float() if v.is_floating_point() else v)
                for k, v in self.tensors.items() if k.startswith(prefix + ".")}

    def f32(self, key: str) -> torch.Tensor:
        return self.tensors[key].float()

    def per_scale(self, prefix: str) -> list[torch.Tensor]:
        return [self.tensors[f"{prefix}.{si}"] for si in range(len(self.meta["schedule"]))]


def load_case(name: str) -> Case:
    folder = golden_dir()
    meta_path, data_path = folder / f"{name}.json", folder / f"{name}.safetensors"
    if not meta_path.is_file() or not data_path.is_file():
        raise AssertionError(f"golden case {name!r} is missing or incomplete in {folder}")
    return Case(name, json.loads(meta_path.read_text()), load_file(str(data_path)))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()
