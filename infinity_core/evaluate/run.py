"""The evaluation run: every prompt x style x configuration x sample, made, scored and recorded.

Each image is written atomically (a temporary file, then a rename), with its generation time in
the PNG's text chunk; then its row is appended to scores.csv and synced. A run that stops at any
point resumes where it was: rows already in the CSV are kept, an image written just before the
stop is scored and recorded without being made again, and nothing is ever made twice.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from PIL import Image, PngImagePlugin

from .. import schedules
from ..errors import InfinityError
from ..images import decode_images, load_image, to_pil
from ..sampler import SEED_RANGE, SamplingSettings
from ..style import StyleReference, encode_prompts, generation_prompt, stylize
from .clip import ClipScorer, cosine
from .progress import Progress
from .protocol import FINESTYLE_TEMPLATE, Configuration, Prompt, Style, generation_template

COLUMNS = ("configuration", "prompt_id", "prompt", "style_id", "style", "seed", "generation_prompt", "image",
           "s_txt", "s_img", "seconds")
TIMING_COLUMNS = ("seconds",)
CSV_NAME, MANIFEST_NAME = "scores.csv", "run.json"


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


@dataclass(frozen=True)
class Case:
    prompt: Prompt
    style: Style
    config: Configuration
    seed: int

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.config.name, self.prompt.id, self.style.id, str(self.seed)

    @property
    def image(self) -> str:
        """The image's path inside the run folder."""
        return f"images/{self.config.name}/{self.prompt.id}__{self.style.id}__seed{self.seed}.png"


def plan(prompts: list[Prompt], styles: list[Style], configs: list[Configuration], settings: RunSettings) -> list[Case]:
    """Prompt by prompt, style by style, every configuration in turn: the configurations of one
    pair are made next to each other, so a partial run already compares them. Sample k of prompt
    i uses seed `seed + i * samples + k` in every style and configuration (paired comparisons),
    wrapping around at 2^64 as a batch's seeds do."""
    return [Case(p, s, c, (settings.seed + i * settings.samples + k) % SEED_RANGE)
            for i, p in enumerate(prompts) for s in styles for c in configs for k in range(settings.samples)]


# --- the run folder -------------------------------------------------------------------------------

def write_bytes_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.partial"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def check_manifest(out: str, settings: RunSettings, configs: list[Configuration], sources: dict) -> dict:
    """The folder's run.json, extended with these configurations, after checking that an earlier
    run in the same folder made its images the same way."""
    path = os.path.join(out, MANIFEST_NAME)
    wanted = {"settings": asdict(settings), "models": sources, "configurations": {}}
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                before = json.load(f)
            wanted["configurations"] = dict(before["configurations"])
            earlier_parts = {part: dict(before[part]) for part in ("settings", "models")}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InfinityError(f"{path} is not a run record this command wrote ({exc}); use another --out "
                                "folder.") from exc
        for part, earlier in earlier_parts.items():
            changed = [k for k in wanted[part] if earlier.get(k) != wanted[part][k]]
            if changed:
                k = changed[0]
                raise InfinityError(f"{out} holds a run made with {k} = {earlier.get(k)!r}, not {wanted[part][k]!r}; "
                                    "resuming would mix the two. Use the same settings, or another --out folder.")
    for config in configs:
        earlier = wanted["configurations"].get(config.name)
        if earlier is not None and earlier != config.as_dict():
            raise InfinityError(f"{out} already holds a configuration named {config.name!r} with other stage "
                                "settings; give this one another name, or use another --out folder.")
        wanted["configurations"][config.name] = config.as_dict()
    os.makedirs(out, exist_ok=True)
    write_text_atomic(path, json.dumps(wanted, indent=2) + "\n")
    return wanted


def read_rows(out: str) -> list[dict]:
    """The rows of scores.csv; a last line cut off by a crash is dropped from the file first."""
    path = os.path.join(out, CSV_NAME)
    if not os.path.isfile(path):
        write_text_atomic(path, ",".join(COLUMNS) + "\n")
        return []
    with open(path, "rb") as f:
        data = f.read()
    if not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
        write_bytes_atomic(path, data)
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise InfinityError(f"{path} is not this command's score table (its header differs); use another --out folder.")
    return list(reader)


def _append_row(out: str, row: dict) -> None:
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow([row[c] for c in COLUMNS])
    with open(os.path.join(out, CSV_NAME), "a", encoding="utf-8", newline="") as f:
        f.write(line.getvalue())
        f.flush()
        os.fsync(f.fileno())


def _save_image(path: str, image: Image.Image, seconds: float, generation: str, seed: int) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("seconds", repr(seconds))
    info.add_text("prompt", generation)
    info.add_text("seed", str(seed))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())


def _saved_image(path: str) -> tuple[Image.Image, float] | None:
    """An image a stopped run wrote but did not record, with its generation time; None if absent."""
    if not os.path.isfile(path):
        return None
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB"), float(img.info["seconds"])
    except (OSError, KeyError, ValueError):
        return None  # not one of ours (the rename makes ours whole): make it again


# --- making and scoring ---------------------------------------------------------------------------

class _Maker:
    """Generation with the loaded models; style images are read once. Every configuration's
    stages are checked against the model and schedule before the first image."""

    def __init__(self, models, settings: RunSettings, configs: list[Configuration]):
        self.model, self.vae, self.t5 = models
        self.settings = settings
        self.schedule = schedules.schedule(settings.aspect, settings.pn)
        for config in configs:
            config.stages.validate(self.schedule, self.model.config.depth)
        self.sampling = SamplingSettings(settings.cfg, settings.tau, settings.top_k, settings.top_p)
        self.style_images: dict[str, torch.Tensor] = {}

    def __call__(self, case: Case) -> tuple[Image.Image, float]:
        """The image and its generation time: prompt encoding, the three-path sampling (style
        image bits are cached after a style's first image) and decoding."""
        if case.style.id not in self.style_images:
            self.style_images[case.style.id] = load_image(case.style.image)
        device = self.model.device
        start = time.perf_counter()
        cond = encode_prompts(self.t5, case.prompt.content, case.style.text,
                              generation_template(self.settings.template, case.style.text))
        codes = stylize(self.model, self.vae, cond, [StyleReference(self.style_images[case.style.id])],
                        case.config.stages, self.schedule, [case.seed], self.sampling)
        image = to_pil(decode_images(self.vae, codes)[0])
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        return image, time.perf_counter() - start


class _Scores:
    """S_txt and S_img of an image; text and style embeddings are computed once each."""

    def __init__(self, scorer: ClipScorer):
        self.scorer = scorer
        self.texts: dict[str, torch.Tensor] = {}
        self.styles: dict[str, torch.Tensor] = {}

    def __call__(self, case: Case, image: Image.Image) -> tuple[float, float]:
        if case.prompt.id not in self.texts:
            self.texts[case.prompt.id] = self.scorer.text_embeddings([case.prompt.content])
        if case.style.id not in self.styles:
            self.styles[case.style.id] = self.scorer.image_embeddings([to_pil(load_image(case.style.image))])
        output = self.scorer.image_embeddings([image])
        return (float(cosine(output, self.texts[case.prompt.id])[0]),
                float(cosine(output, self.styles[case.style.id])[0]))


def evaluate(out: str, prompts: list[Prompt], styles: list[Style], configs: list[Configuration],
             settings: RunSettings, load_models: Callable, load_scorer: Callable[[], ClipScorer],
             sources: dict | None = None, stream=None) -> list[dict]:
    """Make and score every case not yet in `out`'s scores.csv; return all rows of the CSV.

    `load_models()` gives (transformer, vae, t5) and `load_scorer()` the CLIP scorer; both are
    called only if something is left to do."""
    out = os.path.abspath(out)
    check_manifest(out, settings, configs, sources or {})
    rows = read_rows(out)
    done = {(r["configuration"], r["prompt_id"], r["style_id"], r["seed"]) for r in rows}
    cases = plan(prompts, styles, configs, settings)
    todo = [case for case in cases if case.key not in done]
    progress = Progress(len(cases), len(cases) - len(todo), stream)
    if todo:
        scores = _Scores(load_scorer())
        make = None  # the models load only when an image is missing
        progress.show()
        try:
            for case in todo:
                path = os.path.join(out, case.image)
                saved = _saved_image(path)
                if saved is None:
                    make = make or _Maker(load_models(), settings, configs)
                    image, seconds = make(case)
                    _save_image(path, image, seconds, _generation(case, settings), case.seed)
                else:
                    image, seconds = saved
                s_txt, s_img = scores(case, image)
                row = _row(case, settings, s_txt, s_img, seconds)
                _append_row(out, row)
                rows.append(row)
                progress.advance()
        finally:
            progress.close()
    return rows


def _row(case: Case, settings: RunSettings, s_txt: float, s_img: float, seconds: float) -> dict:
    values = [case.config.name, case.prompt.id, case.prompt.content, case.style.id, case.style.text, str(case.seed),
              _generation(case, settings), case.image, f"{s_txt:.6f}", f"{s_img:.6f}", f"{seconds:.3f}"]
    return dict(zip(COLUMNS, values))


def _generation(case: Case, settings: RunSettings) -> str:
    return generation_prompt(case.prompt.content, case.style.text, generation_template(settings.template, case.style.text))
