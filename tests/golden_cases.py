"""The golden cases: vectors the reference implementation computed on tiny random models.

Cases come from the folders named by INFINITY_GOLDEN_DIR (one folder, or several joined by
os.pathsep); by default tests/golden (the 2B family, a copy of shared/golden) and tests/golden_8b
(the 8B patchify family, a copy of shared/golden_8b). Each case is <name>.json +
<name>.safetensors; see FORMAT.md and FORMAT_PATCHIFY.md there. A case is named
"<folder name>/<case>".
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

DEFAULT_DIRS = (Path(__file__).parent / "golden", Path(__file__).parent / "golden_8b")


def golden_dirs() -> list[Path]:
    named = os.environ.get("INFINITY_GOLDEN_DIR")
    return [Path(p) for p in named.split(os.pathsep) if p] if named else list(DEFAULT_DIRS)


def case_names() -> list[str]:
    """Every case of every golden folder; a missing or empty folder yields a failing placeholder."""
    names = []
    for folder in golden_dirs():
        found = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        names += [f"{folder.name}/{stem}" for stem in found] or [f"<no cases in {folder}>"]
    return names


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

    @property
    def patch_factor(self) -> int:
        """Latent positions per token side: 2 for the 8B family (apply_spatial_patchify), else 1."""
        return 2 if self.meta["transformer"]["apply_spatial_patchify"] else 1

    @property
    def latent_scales(self) -> list[tuple[int, int]]:
        """The grid the VAE side uses per scale: `vae_schedule` where the case has one (8B)."""
        return [(h, w) for _, h, w in self.meta.get("vae_schedule", self.meta["schedule"])]

    def vae_token_bits(self) -> list[torch.Tensor]:
        """The VAE's bits in token layout: `vae.token_bits` (8B); in 2B tokens are latent positions."""
        return self.per_scale("vae.token_bits" if self.patch_factor > 1 else "vae.bits")


def load_case(name: str) -> Case:
    folder_name, _, stem = name.rpartition("/")
    folder = next((d for d in golden_dirs() if d.name == folder_name), None)
    if folder is None:
        raise AssertionError(f"golden case {name!r}: no folder {folder_name!r} in {[str(d) for d in golden_dirs()]}")
    meta_path, data_path = folder / f"{stem}.json", folder / f"{stem}.safetensors"
    if not meta_path.is_file() or not data_path.is_file():
        raise AssertionError(f"golden case {name!r} is missing or incomplete in {folder}")
    return Case(stem, json.loads(meta_path.read_text()), load_file(str(data_path)))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()
