"""`python -m infinity_core evaluate`: CLIP scoring from a folder, the protocol files, the run with
resume, the reports, and the run split over processes (torchrun ranks, --shard), on a tiny random
CLIP and the tiny Infinity model set."""
import csv
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infinity_core import schedules
from infinity_core.cli import evaluate as evaluate_command
from infinity_core.cli import main
from infinity_core.errors import InfinityError
from infinity_core.evaluate import folder as folder_module
from infinity_core.evaluate import run as run_module
from infinity_core.evaluate.clip import cosine, load_clip
from infinity_core.evaluate.folder import COLUMNS, TIMING_COLUMNS
from infinity_core.evaluate.protocol import (TABLE2, Prompt, Style, generation_template, parse_configuration,
                                             read_prompts, read_styles)
from infinity_core.evaluate.report import COLOURS, UNMATCHED, layout, scatter, summary_markdown
from infinity_core.evaluate.run import Case, _Scores, plan
from infinity_core.evaluate.settings import RunSettings
from infinity_core.evaluate.stats import mean_interval, t_quantile
from infinity_core.evaluate.tiny_clip import IMAGE_MEAN, IMAGE_SIZE, IMAGE_STD, RESIZE_TO, write_tiny_clip
from infinity_core.sampler import SamplingSettings
from infinity_core.style import generation_prompt
from infinity_core.tiny import write_tiny_models


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return write_tiny_clip(str(tmp_path_factory.mktemp("clip") / "tiny-clip"))


@pytest.fixture(scope="module")
def scorer(clip_dir):
    return load_clip(clip_dir)


def _picture(seed, size=(50, 40)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


# --- CLIP: loading, preprocessing, formulas -------------------------------------------------------

def test_preprocessing_follows_the_folders_processor_config(scorer):
    picture = _picture(1)  # 50 x 40: the short side goes to RESIZE_TO, then a centre crop of IMAGE_SIZE
    w, h = picture.size
    resized = picture.resize((round(w * RESIZE_TO / h), RESIZE_TO), Image.BICUBIC)
    left, top = (resized.width - IMAGE_SIZE) // 2, (resized.height - IMAGE_SIZE) // 2
    crop = np.asarray(resized.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE)), dtype=np.float64) / 255
    expected = (crop - np.array(IMAGE_MEAN)) / np.array(IMAGE_STD)
    got = scorer.pixel_values([picture])[0].permute(1, 2, 0).double().numpy()
    assert got.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_an_odd_margin_is_cropped_as_transformers_does_not_as_openai_clip(scorer):
    """44 x 40 resizes to 39 x 36, a 7-pixel margin across: transformers' CLIPProcessor starts the
    crop at 7 // 2 = 3, OpenAI's CLIP (torchvision's CenterCrop) at round(3.5) = 4. The docs say
    the first is used."""
    picture = _picture(5, (44, 40))
    resized = picture.resize((39, RESIZE_TO), Image.BICUBIC)  # int(36 * 44 / 40) = 39

    def crop_at(left):
        crop = np.asarray(resized.crop((left, 2, left + IMAGE_SIZE, 2 + IMAGE_SIZE)), dtype=np.float64) / 255
        return (crop - np.array(IMAGE_MEAN)) / np.array(IMAGE_STD)
    got = scorer.pixel_values([picture])[0].permute(1, 2, 0).double().numpy()
    np.testing.assert_allclose(got, crop_at(3), atol=1e-4)
    assert np.abs(got - crop_at(4)).max() > 0.1  # the two crops really differ here


def test_scores_match_a_direct_clip_forward(scorer):
    """S_txt and S_img equal the cosines CLIPModel's own forward gives (logits / logit scale)."""
    model = scorer.model
    output, style = _picture(2), _picture(3, (64, 64))
    text = "a cat, animals"
    tokens = scorer.tokenizer([text], return_tensors="pt")
    pixels = torch.from_numpy(np.stack([_direct_pixels(im) for im in (output, style)])).float()
    with torch.no_grad():
        forward = model(input_ids=tokens["input_ids"], pixel_values=pixels)
    scale = model.logit_scale.exp()
    s_txt_direct = float(forward.logits_per_image[0, 0] / scale)
    s_img_direct = float(forward.image_embeds[0] @ forward.image_embeds[1])

    emb_out = scorer.image_embeddings([output])
    assert float(cosine(emb_out, scorer.text_embeddings([text]))[0]) == pytest.approx(s_txt_direct, abs=1e-5)
    assert float(cosine(emb_out, scorer.image_embeddings([style]))[0]) == pytest.approx(s_img_direct, abs=1e-5)
    assert abs(s_txt_direct) > 1e-3  # a real, non-trivial value was compared


def _direct_pixels(picture):
    w, h = picture.size
    short = min(w, h)
    resized = picture.resize((round(w * RESIZE_TO / short), round(h * RESIZE_TO / short)), Image.BICUBIC)
    left, top = (resized.width - IMAGE_SIZE) // 2, (resized.height - IMAGE_SIZE) // 2
    crop = np.asarray(resized.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE)), dtype=np.float64) / 255
    return ((crop - np.array(IMAGE_MEAN)) / np.array(IMAGE_STD)).transpose(2, 0, 1)


def test_known_answers(scorer, tmp_path):
    v = torch.tensor([[0.3, -1.2, 2.0]])
    assert float(cosine(v, v)[0]) == pytest.approx(1.0, abs=1e-12)
    assert float(cosine(v, 5 * v)[0]) == pytest.approx(1.0, abs=1e-12)
    assert float(cosine(torch.tensor([[1.0, 0, 0]]), torch.tensor([[0, 2.0, 0]]))[0]) == 0.0
    assert float(cosine(v, -v)[0]) == pytest.approx(-1.0, abs=1e-12)
    # an output that is the style image itself scores S_img = 1
    picture = _picture(4)
    picture.save(tmp_path / "style.png")
    case = Case(Prompt("p", "a cat, animals"), Style("s", str(tmp_path / "style.png"), "ink"), TABLE2["a"], 0)
    s_txt_content, s_txt_prompt, s_img = _Scores(scorer, RunSettings())(case, picture)
    assert s_img == pytest.approx(1.0, abs=1e-6)
    assert s_txt_content < 0.999 and s_txt_prompt < 0.999


def test_the_two_s_txt_readings_are_against_the_content_and_the_whole_prompt(scorer, tmp_path):
    """S_txt content = cos(image, 'a cat, animals'); S_txt prompt = cos(image, 'a cat, animals, in
    ink wash style'), the generation prompt the template makes."""
    picture, style = _picture(6), _picture(7)
    style.save(tmp_path / "style.png")
    case = Case(Prompt("p", "a cat, animals"), Style("s", str(tmp_path / "style.png"), "ink wash"), TABLE2["d"], 0)
    image = scorer.image_embeddings([picture])
    expected = [float(cosine(image, scorer.text_embeddings([text]))[0])
                for text in ("a cat, animals", "a cat, animals, in ink wash style")]
    assert abs(expected[0] - expected[1]) > 1e-3  # the two texts score differently on this model
    got = _Scores(scorer, RunSettings())(case, picture)
    assert got[:2] == pytest.approx(expected, abs=1e-6)
    assert got[2] == pytest.approx(float(cosine(image, scorer.image_embeddings([style]))[0]), abs=1e-6)


def _broken(clip_dir, tmp_path, change):
    folder = tmp_path / "clip"
    shutil.copytree(clip_dir, folder)
    change(folder)
    return str(folder)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo ran > /dev/null",))


def _set_config(key, value):
    def change(folder):
        config = json.loads((folder / "config.json").read_text())
        config[key] = value
        (folder / "config.json").write_text(json.dumps(config))
    return change


def _other_weights(folder):
    from transformers import CLIPModel

    from infinity_core.evaluate.tiny_clip import tiny_clip_config
    config = tiny_clip_config(600)
    config.projection_dim = 8
    (folder / "model.safetensors").unlink()
    CLIPModel(config).save_pretrained(folder / "other")
    shutil.move(folder / "other" / "model.safetensors", folder / "model.safetensors")


def _truncate(name):
    def change(folder):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
    return change


def _drop_weight(name):
    def change(folder):
        from safetensors.torch import load_file, save_file
        weights = load_file(folder / "model.safetensors")
        del weights[name]
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return change


def _pickled_code(folder):
    (folder / "model.safetensors").unlink()
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump(_RunsCode(), f, protocol=2)


@pytest.mark.parametrize("change, message", [
    (lambda f: shutil.rmtree(f), "no such folder"),
    (lambda f: (shutil.rmtree(f), f.write_text("x")), "this is a file"),
    (lambda f: (f / "config.json").unlink(), "no config.json"),
    (lambda f: (f / "config.json").write_text("{not json"), "not a readable JSON file"),
    (_set_config("model_type", "clip_vision_model"), "not a CLIP with both the image and the text tower"),
    (lambda f: (f / "model.safetensors").unlink(), "no model weights"),
    (lambda f: [(f / n).unlink() for n in ("tokenizer.json", "vocab.json", "merges.txt")], "no tokenizer files"),
    (lambda f: (f / "preprocessor_config.json").unlink(), "no preprocessor_config.json"),
    (lambda f: (f / "preprocessor_config.json").write_text("[1, 2"), "could not read preprocessor_config.json"),
    (_truncate("model.safetensors"), "could not load the CLIP weights"),
    (_other_weights, "could not load the CLIP weights"),
    (_drop_weight("text_projection.weight"), "do not fit the CLIP model.*text_projection.weight"),
    (_pickled_code, "refused to load"),
])
def test_clip_folder_errors(clip_dir, tmp_path, change, message):
    folder = _broken(clip_dir, tmp_path, change)
    with pytest.raises(InfinityError, match=message):
        load_clip(folder)


# --- protocol files and configurations ------------------------------------------------------------

def _finestyle_prompts(path, rows):
    """A prompt file in the column layout of the published FineStyle / Parti subset."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["content_id", "content_prompt", "category", "superclass", "parti_challenge", "parti_note"])
        for i, (content, superclass) in enumerate(rows):
            writer.writerow([f"t_{i:03d}", content, superclass.title(), superclass, "Basic", ""])
    return str(path)


def _styles_file(folder, styles, layout="finestyle"):
    """A styles CSV in the published 10-style file's layout (images next to it), or the short one."""
    paths = []
    with open(folder / "styles.csv", "w", newline="") as f:
        writer = csv.writer(f)
        if layout == "finestyle":
            writer.writerow(["style_id", "figure10_index", "style_name", "style_descriptor", "image_filename",
                             "style_reference_image", "use_for_evaluation", "note"])
        else:
            writer.writerow(["image", "style"])
        for i, (descriptor, colour, use) in enumerate(styles):
            name = f"style_{i:02d}.png"
            Image.new("RGB", (48, 40), colour).save(folder / name)
            paths.append(str(folder / name))
            if layout == "finestyle":
                writer.writerow([f"style_{i:02d}", i, descriptor, descriptor, name, f"styles/{name}", use, ""])
            else:
                writer.writerow([name, descriptor])
    return str(folder / "styles.csv"), paths


STYLES_21_HEADER = ["style_id", "figure10_index", "style_name", "style_descriptor", "style_reference_image",
                    "source_image", "used_for_quantitative_eval_in_paper", "source_note"]


def _styles_21_file(root, styles):
    """A styles file in the published 21-style file's exact layout: <root>/styles/styles_21.csv, its
    image paths relative to <root>, the repository root one folder above the CSV. `styles`:
    (descriptor, colour or None for no image on disk, used)."""
    (root / "styles").mkdir(parents=True, exist_ok=True)
    images = []
    with open(root / "styles" / "styles_21.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(STYLES_21_HEADER)
        for i, (descriptor, colour, used) in enumerate(styles, start=1):
            relative = f"styles/style_{i:02d}_{descriptor.replace(' ', '_')}.png"
            if colour is not None:
                Image.new("RGB", (40, 48), colour).save(root / relative)
            images.append(str(root / relative))
            writer.writerow([f"style_{i:02d}", i, descriptor, descriptor, relative, relative, used,
                             "a stand-in written for this test"])
    return str(root / "styles" / "styles_21.csv"), images


def test_the_published_21_style_layout_is_read_as_published(tmp_path):
    """Paths start from the folder above the CSV; rows marked False are left out, even when their
    image is not there."""
    path, images = _styles_21_file(tmp_path / "repo", [("ink wash", (10, 10, 10), "False"),
                                                       ("felt collage", (200, 30, 30), "True"),
                                                       ("pencil hatching", None, "False"),
                                                       ("tin toy", (30, 30, 200), "True")])
    with open(path, newline="") as f:
        assert next(csv.reader(f)) == STYLES_21_HEADER
    styles = read_styles(path)
    assert [(s.id, s.text, s.image) for s in styles] == [("style_02", "felt collage", images[1]),
                                                         ("style_04", "tin toy", images[3])]
    elsewhere = tmp_path / "copy"
    shutil.copytree(tmp_path / "repo", elsewhere / "root")
    assert read_styles(path, str(elsewhere / "root"))[0].image == str(elsewhere / "root" / "styles" /
                                                                       "style_02_felt_collage.png")
    lonely = tmp_path / "lonely" / "styles"
    lonely.mkdir(parents=True)
    shutil.copy(path, lonely)
    with pytest.raises(InfinityError, match=r"2 style image\(s\) not found.*style_reference_image start from the "
                                            "folder above the CSV"):
        read_styles(str(lonely / "styles_21.csv"))
    text = Path(path).read_text().replace(",True,", ",maybe,", 1)
    Path(path).write_text(text)
    with pytest.raises(InfinityError, match="row 3: used_for_quantitative_eval_in_paper is 'maybe'; write True or False"):
        read_styles(path)


def test_finestyle_files_read_as_published(tmp_path):
    prompts = read_prompts(_finestyle_prompts(tmp_path / "p.csv", [("a cat", "animals"), ("a red cube", "illustrations")]))
    assert [(p.id, p.content) for p in prompts] == [("t_000", "a cat, animals"), ("t_001", "a red cube, illustrations")]
    path, images = _styles_file(tmp_path, [("watercolor painting", (10, 20, 200), "True"),
                                           ("oil painting style", (200, 20, 10), "True"),
                                           ("unused", (0, 0, 0), "False")])
    styles = read_styles(path)
    assert [(s.id, s.text, s.image) for s in styles] == [("style_00", "watercolor painting", images[0]),
                                                         ("style_01", "oil painting style", images[1])]
    template = "{content}, in {style} style"
    assert (generation_prompt("a cat, animals", "watercolor painting", generation_template(template, "watercolor painting"))
            == "a cat, animals, in watercolor painting style")  # the paper's own example
    assert (generation_prompt("a cat, animals", "oil painting style", generation_template(template, "oil painting style"))
            == "a cat, animals, in oil painting style")


@pytest.mark.parametrize("descriptor", ["Oil Painting Style", "oil painting STYLE", "  ukiyo-e Style "])
def test_a_descriptor_ending_in_style_in_any_case_gets_no_second_style(descriptor):
    template = "{content}, in {style} style"
    prompt = generation_prompt("a cat, animals", descriptor, generation_template(template, descriptor))
    assert prompt == f"a cat, animals, in {descriptor.strip()}"


def test_each_sample_of_each_prompt_has_its_own_seed_the_same_in_every_style_and_configuration():
    """Seed 10, 2 samples: prompt 0 uses 10 and 11, prompt 1 12 and 13, prompt 2 14 and 15."""
    prompts = [Prompt(f"p{i}", f"prompt {i}") for i in range(3)]
    styles = [Style("ink", "/styles/ink.png", "ink"), Style("oil", "/styles/oil.png", "oil painting")]
    cases = plan(prompts, styles, [TABLE2["a"], TABLE2["d"]], RunSettings(seed=10, samples=2))
    assert len(cases) == 3 * 2 * 2 * 2
    seeds = {}
    for case in cases:
        seeds.setdefault((case.style.id, case.config.name), {}).setdefault(case.prompt.id, []).append(case.seed)
    assert len(seeds) == 4
    for by_prompt in seeds.values():
        assert by_prompt == {"p0": [10, 11], "p1": [12, 13], "p2": [14, 15]}


def test_seeds_near_2_to_the_64_wrap_around_as_a_batchs_do():
    prompts = [Prompt("p0", "a cat"), Prompt("p1", "a dog")]
    cases = plan(prompts, [Style("ink", "/styles/ink.png", "ink")], [TABLE2["a"]],
                 RunSettings(seed=2 ** 64 - 2, samples=2))
    assert [c.seed for c in cases] == [2 ** 64 - 2, 2 ** 64 - 1, 0, 1]


@pytest.mark.parametrize("seed", [str(2 ** 64), "-1", "x"])
def test_a_seed_outside_0_to_2_to_the_64_is_refused_as_generate_refuses_it(seed, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--tiny", "--prompts", "p.txt", "--styles", "s.csv", "--seed", seed,
              "--out", str(tmp_path / "o")])
    assert exit_.value.code == 2 and "a seed is a whole number from 0 to 2^64 - 1" in capsys.readouterr().err


def test_plain_files_and_missing_images(tmp_path):
    (tmp_path / "p.txt").write_text("# contents\na lighthouse\n\n  an owl  \n")
    assert [(p.id, p.content) for p in read_prompts(str(tmp_path / "p.txt"))] == [("p000", "a lighthouse"), ("p001", "an owl")]
    (tmp_path / "imgs").mkdir()
    path, _ = _styles_file(tmp_path / "imgs", [("ink", (1, 2, 3), "")], layout="short")
    shutil.move(path, tmp_path / "styles.csv")
    with pytest.raises(InfinityError, match="1 style image\\(s\\) not found.*--style-images"):
        read_styles(str(tmp_path / "styles.csv"))
    assert read_styles(str(tmp_path / "styles.csv"), str(tmp_path / "imgs"))[0].image == str(tmp_path / "imgs" / "style_00.png")
    (tmp_path / "bad.csv").write_text("id,words\n1,a cat\n")
    with pytest.raises(InfinityError, match="no prompt column"):
        read_prompts(str(tmp_path / "bad.csv"))
    (tmp_path / "dup.csv").write_text("content_id,content_prompt\nx,a cat\nx,a dog\n")
    with pytest.raises(InfinityError, match="appears twice"):
        read_prompts(str(tmp_path / "dup.csv"))


def test_table2_rows_and_stage_settings():
    switches = {name: (c.stages.feature_init, c.stages.key_sharing, c.stages.query_sharing) for name, c in TABLE2.items()}
    assert switches == {"a": (False, False, False), "b": (True, False, False), "c": (True, True, False),
                        "d": (True, True, True)}
    late = parse_configuration("late:key=3,4;fine=5-8;key_strength=0.5")
    assert (late.stages.key_steps, late.stages.fine_steps, late.stages.key_strength) == ({3, 4}, {5, 6, 7, 8}, 0.5)
    assert late.stages.feature_init and late.stages.query_sharing
    noinit = parse_configuration("x:from=c;init=off;layers=0-15")
    assert (noinit.stages.feature_init, noinit.stages.key_sharing, noinit.stages.query_sharing) == (False, True, False)
    assert noinit.stages.layers == (0, 15)
    for spec, message in (("e", "Could not read the configuration"), ("x:colour=red", "'colour' is not a setting"),
                          ("x:init=maybe", "could not be read"), ("x:from=z", "not a Table 2 row"),
                          ("bad name:key=2", "Could not read"), ("x:key=2-", "Could not read the step list")):
        with pytest.raises(InfinityError, match=message):
            parse_configuration(spec)


def test_mean_interval():
    assert t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-3)
    assert t_quantile(0.975, 10) == pytest.approx(2.2281, abs=1e-3)
    assert t_quantile(0.975, 1000) == pytest.approx(1.9623, abs=1e-3)
    mean, low, high = mean_interval([1.0, 2.0, 3.0, 4.0])
    half = 3.1824 * (5 / 3) ** 0.5 / 2  # t(0.975, 3) * sd / sqrt(n)
    assert (mean, low, high) == pytest.approx((2.5, 2.5 - half, 2.5 + half), abs=1e-3)
    assert mean_interval([0.7]) == (0.7, 0.7, 0.7)


# --- the run: every file, resume, same seed -------------------------------------------------------

@pytest.fixture(scope="module")
def run_inputs(tmp_path_factory, clip_dir):
    folder = tmp_path_factory.mktemp("inputs")
    models = write_tiny_models(str(folder / "models"))
    prompts = _finestyle_prompts(folder / "prompts.csv", [("a cat", "animals"), ("a lighthouse", "outdoor scenes"),
                                                          ("a kite", "objects")])
    styles, _ = _styles_file(folder, [("watercolor painting", (30, 90, 200), "True"),
                                      ("oil painting style", (200, 120, 30), "True")])
    # the published prompt and 10-style layouts, through --max-prompts 2
    return ["--transformer", models["transformer"], "--vae", models["vae"], "--t5", models["text_encoder"],
            "--clip", clip_dir, "--prompts", prompts, "--styles", styles, "--max-prompts", "2", "--pn", "0.06M",
            "--config", "base:from=a;fine=4-6", "--config", "full:fine=4-6", "--seed", "7"]


@pytest.fixture(scope="module")
def full_run(run_inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    assert main(["evaluate", *run_inputs, "--out", str(out)]) == 0
    return out


def _rows(out):
    with open(out / "scores.csv", newline="") as f:
        return list(csv.DictReader(f))


def _without_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


def _cells(rows, name, column):
    mean, low, high = mean_interval([float(r[column]) for r in rows if r["configuration"] == name])
    return f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def test_a_run_writes_every_file(full_run, run_inputs, clip_dir):
    rows = _rows(full_run)
    assert len(rows) == 8 and tuple(rows[0]) == COLUMNS
    assert {r["configuration"] for r in rows} == {"base", "full"}
    assert {(r["prompt_id"], r["seed"]) for r in rows} == {("t_000", "7"), ("t_001", "8")}  # --max-prompts 2 of 3
    first = rows[0]
    assert first["prompt"] == "a cat, animals"
    assert first["generation_prompt"] == "a cat, animals, in watercolor painting style"
    for r in rows:
        image = Image.open(full_run / r["image"])
        assert image.size == schedules.schedule(1.0, "0.06M").image_hw[::-1] and float(r["seconds"]) > 0
    # the CSV's scores are the CLIP scores of the written images: both S_txt readings and S_img
    scorer = load_clip(clip_dir)
    image = scorer.image_embeddings([Image.open(full_run / first["image"])])
    expected = [float(cosine(image, scorer.text_embeddings([text]))[0])
                for text in ("a cat, animals", "a cat, animals, in watercolor painting style")]
    style = Image.open(_style_path(run_inputs, first))
    expected.append(float(cosine(image, scorer.image_embeddings([style]))[0]))
    assert [float(first[c]) for c in ("s_txt_content", "s_txt_prompt", "s_img")] == pytest.approx(expected, abs=2e-6)
    # summary.md: the headline (content, the paper preset's) first, then the other reading, then S_img
    summary = (full_run / "summary.md").read_text()
    for name in ("base", "full"):
        cells = " | ".join(_cells(rows, name, c) for c in ("s_txt_content", "s_txt_prompt", "s_img"))
        assert f"| {name} |" in summary and f" | 4 | {cells} | " in summary
    assert "S_txt content (headline) [95 % interval] | S_txt prompt [95 % interval] | S_img" in summary
    key = ("prompt_id", "style_id", "seed")
    differences = []
    for column in ("s_txt_content", "s_txt_prompt", "s_img"):
        base = {tuple(r[k] for k in key): float(r[column]) for r in rows if r["configuration"] == "base"}
        mean, low, high = mean_interval([float(r[column]) - base[tuple(r[k] for k in key)]
                                         for r in rows if r["configuration"] == "full"])
        differences.append(f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]")
    assert f"| full | 4 | {' | '.join(differences)} |" in summary
    for picture in ("scatter.png", "sheet_base.png", "sheet_full.png"):
        assert Image.open(full_run / picture).size[0] > 300
    assert json.loads((full_run / "run.json").read_text())["configurations"]["full"]["fine_steps"] == [4, 5, 6]


def _style_path(run_inputs, row):
    """The styles file's images lie next to it, named after the style ids."""
    return os.path.join(os.path.dirname(run_inputs[run_inputs.index("--styles") + 1]), row["style_id"] + ".png")


def test_a_stopped_run_resumes_to_the_same_csv(full_run, run_inputs, tmp_path, monkeypatch):
    """Stopped after the third image was written but before its row: the resumed run keeps rows 1-2
    (with their timing), records image 3 without making it again, and makes only the other five.
    The CSV equals the uninterrupted run's in every column except the timing one (seconds)."""
    made = []
    real_stylize, real_score = run_module.stylize, _Scores.__call__
    monkeypatch.setattr(run_module, "stylize", lambda *a, **k: made.append(1) or real_stylize(*a, **k))
    scored = []

    def stop_at_third(self, case, image):
        scored.append(case.key)
        if len(scored) == 3:
            raise KeyboardInterrupt
        return real_score(self, case, image)

    out = tmp_path / "resumed"
    monkeypatch.setattr(_Scores, "__call__", stop_at_third)
    assert main(["evaluate", *run_inputs, "--out", str(out)]) == 130
    before = _rows(out)
    images = {str(p.relative_to(out)) for p in (out / "images").rglob("*.png")}
    assert len(made) == 3 and len(before) == 2 and len(images) == 3
    (unrecorded,) = images - {r["image"] for r in before}
    third_seconds = float(Image.open(out / unrecorded).info["seconds"])

    monkeypatch.setattr(_Scores, "__call__", real_score)
    made.clear()
    assert main(["evaluate", *run_inputs, "--out", str(out)]) == 0
    after = _rows(out)
    assert len(made) == 5
    assert after[:2] == before  # kept as they were, timing included
    assert after[2]["image"] == unrecorded and float(after[2]["seconds"]) == pytest.approx(third_seconds, abs=1e-3)
    assert _without_timing(after) == _without_timing(_rows(full_run))
    for r in after:  # same seeds, same images
        assert np.array_equal(np.asarray(Image.open(out / r["image"])), np.asarray(Image.open(full_run / r["image"])))


def test_a_cut_off_last_row_is_repaired_without_making_the_image_again(full_run, run_inputs, tmp_path, monkeypatch):
    out = tmp_path / "cut"
    shutil.copytree(full_run, out)
    data = (out / "scores.csv").read_bytes()
    (out / "scores.csv").write_bytes(data[:-25])  # a crash in the middle of the last row
    made = []
    real_stylize = run_module.stylize
    monkeypatch.setattr(run_module, "stylize", lambda *a, **k: made.append(1) or real_stylize(*a, **k))
    assert main(["evaluate", *run_inputs, "--out", str(out)]) == 0
    assert made == [] and (out / "scores.csv").read_bytes() == data


def test_a_changed_setting_is_refused_in_the_same_folder(full_run, run_inputs, tmp_path, capsys):
    out = tmp_path / "changed"
    shutil.copytree(full_run, out)
    assert main(["evaluate", *run_inputs, "--out", str(out), "--cfg", "2"]) == 2
    assert "holds a run made with cfg = 3.0, not 2.0" in capsys.readouterr().err
    renamed = [a if a != "full:fine=4-6" else "full:fine=5-6" for a in run_inputs]
    assert main(["evaluate", *renamed, "--out", str(out)]) == 2
    assert "already holds a configuration named 'full'" in capsys.readouterr().err


def test_bad_evaluate_input_is_one_clear_line(run_inputs, tmp_path, capsys):
    args = [a for a in run_inputs]
    args[args.index("--clip") + 1] = str(tmp_path / "no-clip")
    assert main(["evaluate", *args, "--out", str(tmp_path / "o")]) == 2
    assert "no-clip: no such folder" in capsys.readouterr().err
    assert main(["evaluate", *run_inputs, "--config", "d", "--out", str(tmp_path / "o2")]) == 2
    assert "Fine step 7 is out of range" in capsys.readouterr().err


def test_progress_counts_the_whole_run_and_the_time_left(monkeypatch):
    from infinity_core.evaluate import progress as progress_module

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    clock = iter([100.0, 110.0, 130.0])  # start, then one reading per image made
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: next(clock))
    screen = Terminal()
    bar = progress_module.Progress(total=10, done=4, stream=screen, width=10)
    bar.update(5)
    bar.update(7)  # other ranks recorded images too: the rate is the whole run's
    bar.close()
    monkeypatch.undo()
    frames = screen.getvalue().split("\r")[1:]
    assert frames[0] == "[#####.....] 5/10 images, 10.00 s/image, 50s left"
    assert frames[1] == "[#######...] 7/10 images, 10.00 s/image, 30s left\n"
    log = io.StringIO()  # not a terminal: a line at the start, every few images, and at the end
    quiet = progress_module.Progress(total=13, done=0, stream=log, log_every=10, label="shard 2/4")
    quiet.show()
    for done in range(1, 14):
        quiet.update(done)
    assert [line.split("]")[1].split(",")[0] for line in log.getvalue().splitlines()] == \
        [" 0/13 images", " 10/13 images", " 13/13 images"]
    assert log.getvalue().startswith("shard 2/4: [")


# --- the S_txt headline, the paper's Table 2, the presets -----------------------------------------

def _table_rows(values):
    """Score rows from {configuration: [(s_txt_content, s_txt_prompt, s_img), ...]}."""
    rows = []
    for name, triples in values.items():
        for i, (content, prompt, img) in enumerate(triples):
            rows.append({"configuration": name, "prompt_id": f"p{i}", "prompt": "a cat, animals", "style_id": "s",
                         "style": "ink", "seed": str(i), "generation_prompt": "a cat, animals, in ink style",
                         "image": "-", "s_txt_content": f"{content:.6f}", "s_txt_prompt": f"{prompt:.6f}",
                         "s_img": f"{img:.6f}", "seconds": "1.000"})
    return rows


def test_table2_rows_stand_beside_the_configurations_with_their_stages():
    configs = [TABLE2["a"], parse_configuration("mine:from=b"), TABLE2["c"], TABLE2["d"],
               parse_configuration("late:key=3,4;fine=5-8")]
    rows = _table_rows({c.name: [(0.1, 0.2, 0.5), (0.12, 0.21, 0.55)] for c in configs})
    summary = summary_markdown(rows, configs, "content", [("cfg", "3")])
    first_line = {}
    for line in summary.splitlines():
        if line.startswith("| "):
            first_line.setdefault(line.split(" | ")[0][2:], line)
    assert first_line["a"].endswith("| 0.348 / 0.559 (row a) |")
    assert first_line["mine"].endswith("| 0.344 / 0.592 (row b) |")  # row b's stages under another name
    assert first_line["c"].endswith("| 0.320 / 0.620 (row c) |")
    assert first_line["d"].endswith("| 0.330 / 0.603 (row d; Table 1: 6.44 s) |")
    assert first_line["late"].endswith("| - |")
    assert first_line["cfg"] == "| cfg | 3 |"


def test_the_plot_has_a_panel_per_s_txt_reading_and_the_papers_rows():
    """Each configuration's mean disc sits at its mean (S_txt of the panel's reading, S_img); the
    paper's row a is drawn in the colour of the configuration with row a's stages, the others black."""
    configs = [TABLE2["a"], parse_configuration("late:key=3,4;fine=5-8")]
    rows = _table_rows({"a": [(0.10, 0.24, 0.70), (0.12, 0.26, 0.72)], "late": [(0.20, 0.04, 0.62), (0.22, 0.06, 0.60)]})
    picture = scatter(rows, configs, "prompt", ["a caption line"])
    panels = layout(rows, ["a", "late"], "prompt")
    assert [p.reading for p in panels] == ["prompt", "content"]  # the headline first
    column = {"content": "s_txt_content", "prompt": "s_txt_prompt"}
    for panel in panels:
        for i, name in enumerate(("a", "late")):
            mine = [r for r in rows if r["configuration"] == name]
            x = sum(float(r[column[panel.reading]]) for r in mine) / 2
            y = sum(float(r["s_img"]) for r in mine) / 2
            px, py = panel.at(x, y)
            assert picture.getpixel((round(px), round(py))) == COLOURS[i], (panel.reading, name)
        for row, ink in (("a", COLOURS[0]), ("b", UNMATCHED), ("c", UNMATCHED), ("d", UNMATCHED)):
            px, py = panel.at(*{"a": (0.348, 0.559), "b": (0.344, 0.592), "c": (0.320, 0.620), "d": (0.330, 0.603)}[row])
            assert picture.getpixel((round(px), round(py))) == ink, (panel.reading, row)


def _no_models(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")
    monkeypatch.setattr(evaluate_command, "load_models", refuse)
    monkeypatch.setattr(evaluate_command, "load_clip", refuse)


def test_the_headline_option_reorders_the_report_without_making_anything(full_run, run_inputs, tmp_path, monkeypatch):
    out = tmp_path / "headline"
    shutil.copytree(full_run, out)
    _no_models(monkeypatch)
    assert main(["evaluate", *run_inputs, "--out", str(out), "--s-txt", "prompt"]) == 0
    summary = (out / "summary.md").read_text()
    rows = _rows(out)
    cells = " | ".join(_cells(rows, "base", c) for c in ("s_txt_prompt", "s_txt_content", "s_img"))
    assert f" | 4 | {cells} | " in summary
    assert "S_txt prompt (headline) [95 % interval] | S_txt content [95 % interval] | S_img" in summary
    assert "| headline S_txt | prompt |" in summary


def _without(args, *flags):
    """The arguments without the given flags and their values."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        else:
            out.append(a)
    return out


def test_the_presets_set_each_sides_values(full_run, run_inputs, tmp_path, monkeypatch):
    """var-soict: cfg 1, tau 0.1, top_k 600, top_p 0.95, seed 42 (pn 0.25M, overridden here) reach
    the sampler and summary.md; the paper preset is the default, with cfg 3, tau 0.5, top_k 900,
    top_p 0.97 (its seed 0 overridden by --seed 7)."""
    seen = []
    real = run_module.stylize
    monkeypatch.setattr(run_module, "stylize", lambda *a, **k: seen.append((a[6], a[7])) or real(*a, **k))
    out = tmp_path / "var-soict"
    args = _without(run_inputs, "--seed", "--config") + ["--config", "full:fine=4-6", "--preset", "var-soict"]
    assert main(["evaluate", *args, "--out", str(out)]) == 0
    assert seen == [([42], SamplingSettings(1.0, 0.1, 600, 0.95))] * 2 + [([43], SamplingSettings(1.0, 0.1, 600, 0.95))] * 2
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert {k: settings[k] for k in ("pn", "cfg", "tau", "top_k", "top_p", "seed")} == \
        {"pn": "0.06M", "cfg": 1.0, "tau": 0.1, "top_k": 600, "top_p": 0.95, "seed": 42}
    summary = (out / "summary.md").read_text()
    for line in ("| cfg | 1 |", "| tau | 0.1 |", "| top_k | 600 |", "| top_p | 0.95 |", "| headline S_txt | prompt |",
                 "| pixel budget | 0.06M (256x256, aspect 1) |", "| samples | 1 |",
                 "| generation prompt | `{content}, in {style} style` |"):
        assert line in summary
    assert "| seed | 42 (" in summary and "| preset | var-soict: " in summary
    assert "pn 0.06M given (preset: 0.25M)" in summary
    paper = (full_run / "summary.md").read_text()
    for line in ("| cfg | 3 |", "| tau | 0.5 |", "| top_k | 900 |", "| top_p | 0.97 |", "| headline S_txt | content |"):
        assert line in paper
    assert "| preset | paper: " in paper and "seed 7 given (preset: 0)" in paper


@pytest.mark.parametrize("change, message", [
    (["--cfg", "nan"], "argument --cfg: cfg must be a number from 1.0 to 20.0; got nan"),
    (["--top-p", "1.5"], "argument --top-p: top_p must be a number from 0.0 to 1.0; got 1.5"),
    (["--seed", "-1"], "argument --seed: a seed is a whole number"),
    (["--config", "x:key=9"], "Key step 9 is out of range: this schedule has 7 scales"),
    (["--template", "{subject} in {style}"], "it knows only {content} and {style}"),
    (["--shard", "3/2"], "--shard '3/2': write K/N with 1 <= K <= N"),
    (["--merge", "--shard", "1/2"], "--merge runs in one process"),
])
def test_bad_values_are_refused_before_any_model_loads(run_inputs, tmp_path, monkeypatch, capsys, change, message):
    _no_models(monkeypatch)
    try:
        code = main(["evaluate", *run_inputs, "--out", str(tmp_path / "o"), *change])
    except SystemExit as exc:  # argparse refuses a value as it reads it
        code = exc.code
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_out_folder_under_a_file_is_one_clear_line(run_inputs, tmp_path, monkeypatch, capsys):
    _no_models(monkeypatch)
    (tmp_path / "notes.txt").write_text("x")
    assert main(["evaluate", *run_inputs, "--out", str(tmp_path / "notes.txt" / "run")]) == 2
    assert f"{tmp_path / 'notes.txt'} is a file, so no folder can be made inside it" in capsys.readouterr().err
    assert main(["evaluate", *run_inputs, "--out", str(tmp_path / "notes.txt")]) == 2
    assert "is a file; the run folder must be a new folder or an earlier run's" in capsys.readouterr().err


def test_the_published_21_style_file_runs_through_max_prompts_2(run_inputs, tmp_path):
    styles, _ = _styles_21_file(tmp_path / "repo", [("ink wash", (10, 10, 10), "False"),
                                                    ("felt collage", (200, 30, 30), "True"),
                                                    ("tin toy", (30, 30, 200), "True")])
    args = _without(run_inputs, "--styles", "--config") + ["--styles", styles, "--config", "full:fine=4-6"]
    assert main(["evaluate", *args, "--out", str(tmp_path / "run")]) == 0
    rows = _rows(tmp_path / "run")
    assert [(r["prompt_id"], r["style_id"], r["generation_prompt"]) for r in rows] == [
        ("t_000", "style_02", "a cat, animals, in felt collage style"), ("t_000", "style_03", "a cat, animals, in tin toy style"),
        ("t_001", "style_02", "a lighthouse, outdoor scenes, in felt collage style"),
        ("t_001", "style_03", "a lighthouse, outdoor scenes, in tin toy style")]


# --- the run split over processes ------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def _torchrun(*command):
    """`torchrun --standalone --nproc-per-node 2 COMMAND` (torchrun is torch.distributed.run)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *command], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _keys(rows):
    return [(r["configuration"], r["prompt_id"], r["style_id"], r["seed"]) for r in rows]


def test_two_torchrun_ranks_give_the_one_process_table(full_run, run_inputs, tmp_path):
    """Two CPU ranks (gloo) split the cells; rank 0, done first (rank 1 is slowed down), waits for
    rank 1, shows the whole run, merges and writes the report once; scores.csv equals the
    one-process run's in every column but the timing one."""
    out = tmp_path / "ranks"
    result = _torchrun(str(REPO / "tests" / "evaluate_rank.py"), "slow", *run_inputs, "--out", str(out))
    assert result.returncode == 0, result.stderr[-4000:]
    assert _without_timing(_rows(out)) == _without_timing(_rows(full_run))
    bars = [line for line in result.stderr.splitlines() if "images" in line and line.startswith("all 2 ranks: [")]
    assert bars[0].startswith("all 2 ranks: [..............................] 0/8 images")
    assert bars[-1].startswith("all 2 ranks: [##############################] 8/8 images")
    assert result.stdout.count("wrote 8 rows") == 1 and (out / "summary.md").is_file()
    assert not (out / "shards").exists()
    for r in _rows(out):
        assert np.array_equal(np.asarray(Image.open(out / r["image"])), np.asarray(Image.open(full_run / r["image"])))


def test_a_dead_rank_leaves_the_run_resumable(full_run, run_inputs, tmp_path, monkeypatch):
    """Rank 1 dies right after recording its first image, and torchrun stops rank 0. Rank 1's row
    (cell 1: cell i is rank i mod 2's) and every row rank 0 recorded (even cells) are kept; a plain
    one-process run then makes only what is missing and gives the one-process table."""
    out = tmp_path / "dead"
    result = _torchrun(str(REPO / "tests" / "evaluate_rank.py"), "dies", *run_inputs, "--out", str(out))
    assert result.returncode != 0
    cells = _keys(_rows(full_run))
    assert _keys(folder_module.read_table(str(out / "shards" / "2-of-2.csv"))) == [cells[1]]
    rank0 = _keys(folder_module.read_table(str(out / "shards" / "1-of-2.csv")))
    assert set(rank0) <= set(cells[0::2])
    made = []
    real = run_module._Maker.__call__
    monkeypatch.setattr(run_module._Maker, "__call__", lambda self, case: made.append(case.key) or real(self, case))
    assert main(["evaluate", *run_inputs, "--out", str(out)]) == 0
    assert set(made) <= set(cells) - set(rank0) - {cells[1]} and len(made) == len(set(made))
    assert _without_timing(_rows(out)) == _without_timing(_rows(full_run))
    assert not (out / "shards").exists()


def test_shards_and_a_merge_give_the_one_process_table(full_run, run_inputs, tmp_path, monkeypatch, capsys):
    """--shard 1/2 makes cells 0, 2, 4, 6; a merge before shard 2 is done is refused, naming it;
    shard 2/2 stopped after one image resumes on its own; the merge gives the one-process table."""
    out = tmp_path / "array"
    cells = _keys(_rows(full_run))
    made = []
    real = run_module._Maker.__call__
    monkeypatch.setattr(run_module._Maker, "__call__", lambda self, case: made.append(case.key) or real(self, case))
    assert main(["evaluate", *run_inputs, "--out", str(out), "--shard", "1/2"]) == 0
    assert made == cells[0::2] and not (out / "scores.csv").exists() and not (out / "summary.md").exists()
    assert "shard 1/2: [####" in capsys.readouterr().err
    assert main(["evaluate", *run_inputs, "--out", str(out), "--merge"]) == 2
    assert "4 of 8 images are not made yet (shard 2/2: 4)" in capsys.readouterr().err

    record = folder_module.TableWriter.append

    def stop_after_one(self, row):
        record(self, row)
        raise KeyboardInterrupt
    monkeypatch.setattr(folder_module.TableWriter, "append", stop_after_one)
    made.clear()
    assert main(["evaluate", *run_inputs, "--out", str(out), "--shard", "2/2"]) == 130
    monkeypatch.setattr(folder_module.TableWriter, "append", record)
    assert main(["evaluate", *run_inputs, "--out", str(out), "--shard", "2/2"]) == 0
    assert made == cells[1::2]  # one image before the stop, the other three after: none twice
    assert main(["evaluate", *run_inputs, "--out", str(out), "--merge"]) == 0
    assert _without_timing(_rows(out)) == _without_timing(_rows(full_run))
    assert (out / "summary.md").is_file() and not (out / "shards").exists()
