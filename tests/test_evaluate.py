"""`python -m infinity_core evaluate`: CLIP scoring from a folder, the protocol files, the run with
resume, and the reports, on a tiny random CLIP and the tiny Infinity model set."""
import csv
import io
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infinity_core import schedules
from infinity_core.cli import main
from infinity_core.errors import InfinityError
from infinity_core.evaluate import run as run_module
from infinity_core.evaluate.clip import cosine, load_clip
from infinity_core.evaluate.protocol import (TABLE2, Prompt, Style, generation_template, parse_configuration,
                                             read_prompts, read_styles)
from infinity_core.evaluate.run import COLUMNS, TIMING_COLUMNS, Case, _Scores
from infinity_core.evaluate.stats import mean_interval, t_quantile
from infinity_core.evaluate.tiny_clip import IMAGE_MEAN, IMAGE_SIZE, IMAGE_STD, RESIZE_TO, write_tiny_clip
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
    s_txt, s_img = _Scores(scorer)(case, picture)
    assert s_img == pytest.approx(1.0, abs=1e-6)
    assert s_txt < 0.999


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
    prompts = _finestyle_prompts(folder / "prompts.csv", [("a cat", "animals"), ("a lighthouse", "outdoor scenes")])
    styles, _ = _styles_file(folder, [("watercolor painting", (30, 90, 200), "True"),
                                      ("oil painting style", (200, 120, 30), "True")])
    return ["--transformer", models["transformer"], "--vae", models["vae"], "--t5", models["text_encoder"],
            "--clip", clip_dir, "--prompts", prompts, "--styles", styles, "--pn", "0.06M",
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


def test_a_run_writes_every_file(full_run, run_inputs, clip_dir):
    rows = _rows(full_run)
    assert len(rows) == 8 and tuple(rows[0]) == COLUMNS
    assert {r["configuration"] for r in rows} == {"base", "full"}
    assert {(r["prompt_id"], r["seed"]) for r in rows} == {("t_000", "7"), ("t_001", "8")}
    first = rows[0]
    assert first["prompt"] == "a cat, animals"
    assert first["generation_prompt"] == "a cat, animals, in watercolor painting style"
    for r in rows:
        image = Image.open(full_run / r["image"])
        assert image.size == schedules.schedule(1.0, "0.06M").image_hw[::-1] and float(r["seconds"]) > 0
    # the CSV's scores are the CLIP scores of the written images
    scores = _Scores(load_clip(clip_dir))
    case = Case(Prompt("t_000", first["prompt"]), Style(first["style_id"], _style_path(run_inputs, first), first["style"]),
                TABLE2["a"], 7)
    s_txt, s_img = scores(case, Image.open(full_run / first["image"]))
    assert (float(first["s_txt"]), float(first["s_img"])) == pytest.approx((s_txt, s_img), abs=2e-6)
    summary = (full_run / "summary.md").read_text()
    for name in ("base", "full"):
        values = [float(r["s_img"]) for r in rows if r["configuration"] == name]
        mean, low, high = mean_interval(values)
        assert f"| {name} |" in summary and f"{mean:.4f} [{low:.4f}, {high:.4f}]" in summary
    base = {(r["prompt_id"], r["style_id"], r["seed"]): float(r["s_txt"]) for r in rows if r["configuration"] == "base"}
    paired = [float(r["s_txt"]) - base[(r["prompt_id"], r["style_id"], r["seed"])] for r in rows if r["configuration"] == "full"]
    mean, low, high = mean_interval(paired)
    assert f"| full | 4 | {mean:+.4f} [{low:+.4f}, {high:+.4f}] |" in summary
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
    bar.advance()
    bar.advance()
    bar.close()
    monkeypatch.undo()
    frames = screen.getvalue().split("\r")[1:]
    assert frames[0] == "[#####.....] 5/10 images, 10.00 s/image, 50s left"
    assert frames[1] == "[######....] 6/10 images, 15.00 s/image, 1m00s left\n"
    log = io.StringIO()  # not a terminal: a line every few images, and at the end
    quiet = progress_module.Progress(total=3, done=0, stream=log, log_every=10)
    for _ in range(3):
        quiet.advance()
    assert log.getvalue().count("\n") == 1 and "3/3 images" in log.getvalue()
