"""The evaluation run: every prompt x style x configuration x sample, made, scored and recorded.

Each image is written atomically (a temporary file, then a rename), with its generation time in
the PNG's text chunk; then its row is appended to the process's table file and synced. A run
that stops at any point resumes where it was: rows already recorded are kept, an image written
just before the stop is scored and recorded without being made again, and nothing is ever made
twice. A process makes only its own share of the cells (see launch.py); the process that writes
the report merges the shares' rows into scores.csv at the end (see folder.py).
"""
from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from typing import Callable

import torch
from PIL import Image, PngImagePlugin

from .. import schedules
from ..errors import InfinityError
from ..images import decode_images, load_image, to_pil
from ..sampler import SEED_RANGE, SamplingSettings
from ..style import StyleReference, encode_prompts, generation_prompt, stylize
from . import folder
from .clip import ClipScorer, cosine
from .launch import Launch
from .progress import Progress
from .protocol import Configuration, Prompt, Style, generation_template
from .settings import RunSettings


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


def _save_image(path: str, image: Image.Image, seconds: float, generation: str, seed: int) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("seconds", repr(seconds))
    info.add_text("prompt", generation)
    info.add_text("seed", str(seed))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    folder.write_bytes_atomic(path, buffer.getvalue())


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
    stages are checked against the model (its depth, for a layer range) before the first image."""

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
    """S_txt against the content, S_txt against the generation prompt, and S_img of an image;
    each text and style embedding is computed once."""

    def __init__(self, scorer: ClipScorer, settings: RunSettings):
        self.scorer, self.settings = scorer, settings
        self.texts: dict[str, torch.Tensor] = {}
        self.styles: dict[str, torch.Tensor] = {}

    def _text(self, text: str) -> torch.Tensor:
        if text not in self.texts:
            self.texts[text] = self.scorer.text_embeddings([text])
        return self.texts[text]

    def __call__(self, case: Case, image: Image.Image) -> tuple[float, float, float]:
        if case.style.id not in self.styles:
            self.styles[case.style.id] = self.scorer.image_embeddings([to_pil(load_image(case.style.image))])
        output = self.scorer.image_embeddings([image])
        return (float(cosine(output, self._text(case.prompt.content))[0]),
                float(cosine(output, self._text(_generation(case, self.settings)))[0]),
                float(cosine(output, self.styles[case.style.id])[0]))


def evaluate(out: str, prompts: list[Prompt], styles: list[Style], configs: list[Configuration],
             settings: RunSettings, load_models: Callable, load_scorer: Callable[[], ClipScorer],
             sources: dict | None = None, stream=None, launch: Launch = Launch()) -> list[dict] | None:
    """Make and score this process's share of the cells not yet recorded in `out`. The process
    that leads the launch then merges every share into scores.csv and returns all its rows; the
    others return None.

    `load_models()` gives (transformer, vae, t5) and `load_scorer()` the CLIP scorer; both are
    called only if something is left to do."""
    out = os.path.abspath(out)
    folder.check_manifest(out, settings, configs, sources or {})
    cases = plan(prompts, styles, configs, settings)
    table = folder.TableWriter(launch.table(out))  # first: a cut-off row of ours is dropped before reading
    done = {folder.key_of(r) for r in folder.recorded(out)}
    todo = [case for i, case in enumerate(cases) if launch.owns(i) and case.key not in done]
    # The lead shows the whole run, counted from every process's files; a shard shows its own share.
    shown = cases if launch.leads else [case for i, case in enumerate(cases) if launch.owns(i)]
    shown_keys = {case.key for case in shown}

    def recorded_count() -> int:
        return len(shown_keys & {folder.key_of(r) for r in folder.recorded(out)})

    progress = None
    if launch.leads or launch.kind == "shard":
        label = f"all {launch.count} ranks" if launch.kind == "torchrun" else launch.label
        progress = Progress(len(shown), len(shown_keys & done), stream, label=label)
        progress.show()
    try:
        if todo:
            scores = _Scores(load_scorer(), settings)
            make = None  # the models load only when an image is missing
            for case in todo:
                path = os.path.join(out, case.image)
                saved = _saved_image(path)
                if saved is None:
                    make = make or _Maker(load_models(), settings, configs)
                    image, seconds = make(case)
                    _save_image(path, image, seconds, _generation(case, settings), case.seed)
                else:
                    image, seconds = saved
                table.append(_row(case, settings, *scores(case, image), seconds))
                if progress:
                    progress.update(recorded_count())
        launch.barrier()  # torchrun: every rank has recorded its share
        if progress:
            progress.update(recorded_count())
    finally:
        if progress:
            progress.close()
    return folder.merge(out, [case.key for case in cases]) if launch.leads else None


def merge_run(out: str, prompts: list[Prompt], styles: list[Style], configs: list[Configuration],
              settings: RunSettings, sources: dict) -> list[dict]:
    """The merge step after the shards of a job array (--shard K/N) have finished: checks that every
    cell is recorded, merges the parts into scores.csv and returns its rows. Makes nothing."""
    out = os.path.abspath(out)
    if not os.path.isfile(os.path.join(out, folder.MANIFEST_NAME)):
        raise InfinityError(f"{out} holds no run to merge (no {folder.MANIFEST_NAME}); run the shards first.")
    folder.check_manifest(out, settings, configs, sources)
    cases = plan(prompts, styles, configs, settings)
    done = {folder.key_of(r) for r in folder.recorded(out)}
    missing = [i for i, case in enumerate(cases) if case.key not in done]
    if missing:
        counts = sorted(folder.part_counts(out))
        n = counts[0] if len(counts) == 1 else None
        by_shard = ""
        if n:
            left = {k: sum(1 for i in missing if i % n == k) for k in range(n)}
            by_shard = " (" + ", ".join(f"shard {k + 1}/{n}: {c}" for k, c in left.items() if c) + ")"
        raise InfinityError(f"{len(missing)} of {len(cases)} images are not made yet{by_shard}. Run the unfinished "
                            "shards again (each resumes where it stopped), then merge.")
    return folder.merge(out, [case.key for case in cases])


def _row(case: Case, settings: RunSettings, s_txt_content: float, s_txt_prompt: float, s_img: float,
         seconds: float) -> dict:
    values = [case.config.name, case.prompt.id, case.prompt.content, case.style.id, case.style.text, str(case.seed),
              _generation(case, settings), case.image, f"{s_txt_content:.6f}", f"{s_txt_prompt:.6f}",
              f"{s_img:.6f}", f"{seconds:.3f}"]
    return dict(zip(folder.COLUMNS, values))


def _generation(case: Case, settings: RunSettings) -> str:
    return generation_prompt(case.prompt.content, case.style.text, generation_template(settings.template, case.style.text))
