"""The evaluation protocol's inputs: prompts, styles and configurations, and the paper's numbers.

Prompts: the FineStyle / Parti subset's CSV as it is published (columns content_id, content_prompt,
superclass, ...: the content is "<content_prompt>, <superclass>", e.g. "a cat, animals"), or a
text file with one content per line. Styles: a CSV with an image and a style prompt per row, in
the published layouts (the 10-style file: image_filename beside the CSV, filter column
use_for_evaluation; the 21-style file: style_reference_image relative to the repository root one
folder above the CSV, filter column used_for_quantitative_eval_in_paper) or the pack's short one
(image, style). Configurations: the paper's Table 2 rows by name, or stage settings over the full
method.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, fields, replace

from ..errors import InfinityError
from ..style import Stages, format_steps, parse_steps

FINESTYLE_TEMPLATE = "{content}, in {style} style"  # "a cat, animals, in watercolor painting style"
_ID = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Prompt:
    id: str
    content: str  # the content path's prompt, and the text S_txt is measured against


@dataclass(frozen=True)
class Style:
    id: str
    image: str  # absolute path
    text: str   # the style path's prompt


def safe_id(text: str) -> str:
    """A name usable in file names: runs of other characters become '_'."""
    return _ID.sub("_", text.strip()).strip("_") or "x"


def _read_csv(path: str, what: str) -> tuple[list[str], list[dict]]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            return [h.strip() for h in reader.fieldnames or []], rows
    except FileNotFoundError:
        raise InfinityError(f"{path}: no such {what} file.") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InfinityError(f"{path}: could not read the {what} file ({exc}); it must be UTF-8 CSV.") from exc


def _column(header: list[str], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in header), None)


def _one_line(text: str, path: str, where: str) -> str:
    text = " ".join(str(text or "").split())
    if not text:
        raise InfinityError(f"{path}, {where}: the text is empty.")
    return text


def read_prompts(path: str) -> list[Prompt]:
    """Prompts of a FineStyle-style CSV (content_prompt [+ superclass]) or a one-per-line text file."""
    path = os.path.abspath(path)
    if path.lower().endswith(".csv"):
        header, rows = _read_csv(path, "prompts")
        text_col = _column(header, ("content_prompt", "content", "prompt"))
        if text_col is None:
            raise InfinityError(f"{path}: no prompt column. The header must name one of content_prompt, "
                                f"content or prompt (found: {', '.join(header) or 'nothing'}).")
        id_col = _column(header, ("content_id", "id"))
        prompts = []
        for i, row in enumerate(rows):
            where = f"row {i + 2}"
            content = _one_line(row.get(text_col), path, where)
            superclass = " ".join(str(row.get("superclass") or "").split())
            if superclass:
                content = f"{content}, {superclass}"
            prompts.append(Prompt(safe_id(row.get(id_col) or f"p{i:03d}") if id_col else f"p{i:03d}", content))
    else:
        try:
            with open(path, encoding="utf-8-sig") as f:
                lines = [line.strip() for line in f]
        except FileNotFoundError:
            raise InfinityError(f"{path}: no such prompts file.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InfinityError(f"{path}: could not read the prompts file ({exc}).") from exc
        texts = [_one_line(line, path, "") for line in lines if line and not line.startswith("#")]
        prompts = [Prompt(f"p{i:03d}", text) for i, text in enumerate(texts)]
    return _unique(prompts, path, "prompt")


# Image columns, each with the folder its relative paths start from: the CSV's own, or the one
# above it (the published repository's root, where style_reference_image = "styles/style_01_...").
_IMAGE_COLUMNS = (("image", False), ("image_filename", False), ("style_reference_image", True))
# Filter columns of the published 10- and 21-style files: rows marked false are not evaluated.
_FILTER_COLUMNS = ("use_for_evaluation", "used_for_quantitative_eval_in_paper")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def read_styles(path: str, images_dir: str | None = None) -> list[Style]:
    """Styles of a CSV. Relative image paths start from `images_dir` when given, else from the
    CSV's folder (image, image_filename) or the folder above it (style_reference_image)."""
    path = os.path.abspath(path)
    header, rows = _read_csv(path, "styles")
    image_col, above = next(((name, above) for name, above in _IMAGE_COLUMNS if name in header), (None, False))
    text_col = _column(header, ("style", "style_descriptor", "style_name"))
    if image_col is None or text_col is None:
        raise InfinityError(f"{path}: the header must name an image column (image, image_filename or "
                            "style_reference_image) and a style prompt column (style or style_descriptor); "
                            f"found: {', '.join(header) or 'nothing'}.")
    id_col = _column(header, ("style_id", "id", "name"))
    filter_col = _column(header, _FILTER_COLUMNS)
    base = os.path.abspath(images_dir) if images_dir else os.path.dirname(path)
    if above and not images_dir:
        base = os.path.dirname(base)
    styles, missing = [], []
    for i, row in enumerate(rows):
        where = f"row {i + 2}"
        if filter_col:
            flag = str(row.get(filter_col) or "").strip().lower()
            if flag not in _BOOLEANS:
                raise InfinityError(f"{path}, {where}: {filter_col} is {row.get(filter_col)!r}; write True or False.")
            if not _BOOLEANS[flag]:
                continue
        image = os.path.join(base, _one_line(row.get(image_col), path, f"{where}, {image_col}"))
        if not os.path.isfile(image):
            missing.append(image)
        styles.append(Style(safe_id(row.get(id_col) or f"s{i:02d}") if id_col else f"s{i:02d}", image,
                            _one_line(row.get(text_col), path, f"{where}, {text_col}")))
    if missing:
        start = "--style-images" if images_dir else "the folder above the CSV" if above else "the CSV's folder"
        raise InfinityError(f"{path}: {len(missing)} style image(s) not found: {', '.join(missing[:3])}"
                            f"{' ...' if len(missing) > 3 else ''}. The paths in {image_col} start from {start} "
                            f"({base}). Put the images there, or give the folder they start from with "
                            "--style-images.")
    return _unique(styles, path, "style")


def _unique(items: list, path: str, what: str) -> list:
    if not items:
        raise InfinityError(f"{path}: no {what}s in the file.")
    seen = set()
    for item in items:
        if item.id in seen:
            raise InfinityError(f"{path}: the {what} id {item.id!r} appears twice; ids name the image files, "
                                "so each must be unique.")
        seen.add(item.id)
    return items


def generation_template(template: str, style: str) -> str:
    """The template for one style: a descriptor that already ends in 'style' is not followed by
    a second 'style' ("in oil painting style", not "in oil painting style style")."""
    if style.strip().lower().split()[-1:] == ["style"]:
        return template.replace("{style} style", "{style}")
    return template


# --- configurations ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Configuration:
    name: str
    stages: Stages
    label: str = ""

    def describe(self) -> str:
        s = self.stages
        parts = [f"FI {'on' if s.feature_init else 'off'}",
                 f"KSAS {'on' if s.key_sharing else 'off'} (key {format_steps(s.key_steps)})",
                 f"AQS {'on' if s.query_sharing else 'off'} (fine {format_steps(s.fine_steps)})"]
        if s.key_strength != 1 or s.fine_strength != 1:
            parts.append(f"strengths {s.key_strength:g}/{s.fine_strength:g}")
        if s.layers is not None:
            parts.append(f"layers {s.layers[0]}-{s.layers[1]}")
        if not s.uncond:
            parts.append("conditional half only")
        return ", ".join(parts)

    def as_dict(self) -> dict:
        s = self.stages
        out = {f.name: getattr(s, f.name) for f in fields(s)}
        out["key_steps"], out["fine_steps"] = sorted(s.key_steps), sorted(s.fine_steps)
        out["layers"] = list(s.layers) if s.layers else None
        return out


FULL = Stages()
TABLE2 = {
    "a": Configuration("a", replace(FULL, feature_init=False, key_sharing=False, query_sharing=False), "baseline"),
    "b": Configuration("b", replace(FULL, key_sharing=False, query_sharing=False), "+ Feature Initialization"),
    "c": Configuration("c", replace(FULL, query_sharing=False), "+ Key Stage Attention Sharing"),
    "d": Configuration("d", FULL, "+ Adaptive Query Sharing (the full method)"),
}
# The paper's numbers (FineStyle protocol, 1M): S_txt and S_img of each Table 2 row; row d, the full
# method, is also Table 1's row, at 6.44 s per image.
PAPER_TABLE2 = {"a": (0.348, 0.559), "b": (0.344, 0.592), "c": (0.320, 0.620), "d": (0.330, 0.603)}
PAPER_SECONDS = 6.44


def paper_row(config: Configuration) -> str | None:
    """The Table 2 row with the same stage settings as `config` (whatever its name), if any."""
    return next((name for name, row in TABLE2.items() if row.stages == config.stages), None)


_SWITCHES = {"init": "feature_init", "ksas": "key_sharing", "aqs": "query_sharing", "uncond": "uncond"}
_ON_OFF = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False}
_SPEC_HELP = ("Write a Table 2 row (a, b, c, d) or NAME:SETTING=VALUE;... over a row, for example "
              "'late:from=d;key=3,4;fine=5-8' or 'half:key_strength=0.5'. Settings: from (a-d, default d), "
              "key, fine, init, ksas, aqs, uncond (on/off), key_strength, fine_strength, layers (e.g. 0-15).")


def parse_configuration(spec: str) -> Configuration:
    spec = spec.strip()
    if spec in TABLE2:
        return TABLE2[spec]
    name, colon, body = spec.partition(":")
    name = name.strip()
    if not colon or not name or safe_id(name) != name:
        raise InfinityError(f"Could not read the configuration {spec!r}. {_SPEC_HELP} Names use letters, "
                            "digits, '_', '-' and '.'.")
    settings = {}
    for item in filter(str.strip, body.split(";")):
        key, eq, value = (p.strip() for p in item.partition("="))
        if not eq or key in settings:
            raise InfinityError(f"In the configuration {spec!r}, {item.strip()!r} is not one new SETTING=VALUE. "
                                f"{_SPEC_HELP}")
        settings[key] = value
    base = settings.pop("from", "d")
    if base not in TABLE2:
        raise InfinityError(f"In the configuration {spec!r}, from={base} is not a Table 2 row (a, b, c or d).")
    unknown = [k for k in settings if k not in ("key", "fine", "key_strength", "fine_strength", "layers", *_SWITCHES)]
    if unknown:
        raise InfinityError(f"In the configuration {spec!r}, {unknown[0]!r} is not a setting. {_SPEC_HELP}")
    stages = TABLE2[base].stages
    try:
        for key, value in settings.items():
            if key in ("key", "fine"):
                stages = replace(stages, **{f"{key}_steps": parse_steps(value)})
            elif key in _SWITCHES:
                stages = replace(stages, **{_SWITCHES[key]: _ON_OFF[value.lower()]})
            elif key == "layers":
                first, _, last = value.partition("-")
                stages = replace(stages, layers=(int(first), int(last or first)))
            else:
                stages = replace(stages, **{key: float(value)})
    except InfinityError:
        raise
    except (KeyError, ValueError) as exc:
        raise InfinityError(f"In the configuration {spec!r}, a value could not be read ({exc}). {_SPEC_HELP}") from None
    return Configuration(name, stages, f"row {base} with {body.strip()}")
