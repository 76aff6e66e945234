"""The settings of a run: what decides an image (RunSettings), the two sides' named presets, and
the two readings of the text score S_txt.

Presets: `paper` is the pack's reading of the paper (Infinity-2B at 1M with the sampler defaults
of the same group's Infinite-Story code); `var-soict` is the public re-implementation people
compare with (LeeHoang2710/VAR-SOICT, src/var_soict/config.py: 0.25M, cfg 1, tau 0.1, top_k 600,
top_p 0.95, seed 42). An explicit option overrides its preset's value.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from .protocol import FINESTYLE_TEMPLATE


@dataclass(frozen=True)
class RunSettings:
    """Everything besides the configuration that decides an image."""
    seed: int = 0
    samples: int = 1
    cfg: float = 3.0
    tau: float = 0.5
    top_k: int = 900
    top_p: float = 0.97
    pn: str = "1M"
    aspect: float = 1.0
    template: str = FINESTYLE_TEMPLATE


# S_txt = cos(CLIP image embedding of the output, CLIP text embedding of one of these texts);
# scores.csv holds both, --s-txt picks the one the report leads with.
S_TXT = {
    "content": "the content with its superclass, as the content path is prompted ('a cat, animals')",
    "prompt": "the full generation prompt ('a cat, animals, in watercolor painting style')",
}
S_TXT_COLUMNS = {"content": "s_txt_content", "prompt": "s_txt_prompt"}


@dataclass(frozen=True)
class Preset:
    about: str
    pn: str
    cfg: float
    tau: float
    top_k: int
    top_p: float
    seed: int
    s_txt: str  # the headline reading


PRESETS = {
    "paper": Preset("the pack's reading of the paper: Infinity-2B at 1M, Infinite-Story's sampler defaults",
                    pn="1M", cfg=3.0, tau=0.5, top_k=900, top_p=0.97, seed=0, s_txt="content"),
    "var-soict": Preset("the public re-implementation LeeHoang2710/VAR-SOICT (its config.py)",
                        pn="0.25M", cfg=1.0, tau=0.1, top_k=600, top_p=0.95, seed=42, s_txt="prompt"),
}
PRESET_KEYS = tuple(f.name for f in fields(Preset) if f.name != "about")


def resolve(preset: str, given: dict) -> tuple[dict, list[str]]:
    """The preset's values with the given (not None) ones over them, and the names of the values
    that differ from the preset's."""
    base = PRESETS[preset]
    values = {key: getattr(base, key) if given.get(key) is None else given[key] for key in PRESET_KEYS}
    return values, [key for key in PRESET_KEYS if values[key] != getattr(base, key)]
