"""`python -m infinity_core`: the engine from files, without ComfyUI, on the tiny model set."""
import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infinity_core import cli, schedules
from infinity_core.cli import main
from infinity_core.cli import stylize as stylize_command
from infinity_core.tiny import write_tiny_models
from infinity_core.weights import model_files

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    write_tiny_models(str(folder))
    return folder


def _flags(models):
    paths = {sub: next((models / sub).iterdir()) for sub in ("infinity", "vae", "text_encoders")}
    return ["--transformer", str(paths["infinity"]), "--vae", str(paths["vae"]), "--t5", str(paths["text_encoders"]),
            "--pn", "0.25M", "--aspect", "0.75"]


def test_generate_writes_one_image_per_seed(models, tmp_path):
    out = tmp_path / "plain.png"
    assert main(["generate", *_flags(models), "--prompt", "a lighthouse", "--batch", "2", "--out", str(out)]) == 0
    images = [np.asarray(Image.open(tmp_path / f"plain_{i}.png")) for i in range(2)]
    height, width = schedules.schedule(0.75, "0.25M").image_hw  # 432 x 576
    assert images[0].shape == (height, width, 3) and not np.array_equal(images[0], images[1])


def test_stylize_with_weighted_styles_and_a_content_image(models, tmp_path):
    for name, color in (("s1.png", (200, 30, 30)), ("s2.png", (20, 90, 220)), ("c.png", (90, 90, 90))):
        Image.new("RGBA", (130, 70), color + (255,)).save(tmp_path / name)
    out = tmp_path / "styled.png"
    assert main(["stylize", *_flags(models), "--content", "a house", "--style", "mosaic",
                 "--style-image", str(tmp_path / "s1.png"), "--style-image", f"{tmp_path / 's2.png'}=0.5",
                 "--content-image", str(tmp_path / "c.png"), "--out", str(out)]) == 0
    height, width = schedules.schedule(0.75, "0.25M").image_hw
    assert Image.open(out).size == (width, height)


def test_bad_input_is_one_clear_line(models, tmp_path, capsys):
    assert main(["stylize", *_flags(models), "--content", "a cat", "--style", "ink", "--key-steps", "2-",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.strip() == ("error: Could not read the step list '2-': write step numbers and "
                                               "ranges separated by commas, such as '2,3' or '4-7'.")
    assert main(["generate", "--models", str(tmp_path / "none"), "--prompt", "a cat",
                 "--out", str(tmp_path / "y.png")]) == 2
    assert "Model files not found" in capsys.readouterr().err


@pytest.fixture
def no_loading(monkeypatch):
    """Any model load fails the test: values must be checked before."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the values were checked")
    for name in ("load_transformer", "load_vae", "load_text_encoder"):
        monkeypatch.setattr(model_files, name, refuse)


@pytest.mark.parametrize("flag,value,fragment", [
    ("--tau", "0", "tau must be a number from 0.05 to 2.0"), ("--tau", "-1", "tau must be"),
    ("--cfg", "nan", "cfg must be"), ("--cfg", "inf", "cfg must be"), ("--batch", "0", "batch_size must be"),
    ("--seed", str(2 ** 64), "a seed is a whole number from 0 to 2^64 - 1"), ("--seed", "-1", "a seed is"),
    ("--top-p", "1.5", "top_p must be"), ("--top-k", "-1", "top_k must be"), ("--top-k", "2.5", "not a whole number"),
    ("--style-image", "x.png=abc", "the weight 'abc' after '=' is not a number"),
    ("--style-image", "x.png=-1", "the weight '-1'"),
    ("--region-strength", "-1", "give a number from 0 to 10"), ("--region-strength", "nan", "from 0 to 10"),
    ("--position-weight", "nan", "give a number from 0 to 2"), ("--position-weight", "3", "from 0 to 2"),
])
def test_every_value_the_widgets_refuse_is_refused_before_loading(models, tmp_path, capsys, no_loading, flag, value,
                                                                   fragment):
    with pytest.raises(SystemExit) as exit_:
        main(["stylize", *_flags(models), "--content", "a cat", "--style", "ink", flag, value,
              "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and fragment in err and "Traceback" not in err


@pytest.mark.parametrize("extra,fragment", [
    (["--fine-steps", "4-12"], "Fine step 10,11,12 is out of range"), (["--key-steps", "2-"], "Could not read the step list"),
    (["--template", "{subject} in {style}"], "it knows only {content} and {style}"),
    (["--style-image", "missing.png"], "Could not read the image missing.png"),
    (["--out", "."], "is a folder"), (["--out", "nowhere/x.png"], "does not exist"),
    (["--out", "x.abc"], ".abc is not an image format"),
    (["--content", " "], "The content prompt is empty"), (["--style", ""], "The style prompt is empty"),
    (["--regions", "auto"], "style 1 has none (a style in words only)"),
    (["--regions", "auto", "--style-image", "s.png=0"], "every style is left out (1 with weight 0"),
])
def test_settings_that_need_the_schedule_are_checked_before_loading(models, tmp_path, monkeypatch, capsys,
                                                                     no_loading, extra, fragment):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (20, 20), (200, 30, 30)).save(tmp_path / "s.png")
    assert main(["stylize", *_flags(models), "--content", "a cat", "--style", "ink", "--out", "x.png", *extra]) == 2
    assert fragment in capsys.readouterr().err


def test_an_empty_prompt_is_refused_before_loading(models, tmp_path, capsys, no_loading):
    assert main(["generate", *_flags(models), "--prompt", "", "--out", str(tmp_path / "x.png")]) == 2
    assert "the prompt is empty" in capsys.readouterr().err


def test_missing_model_files_are_all_listed_with_the_readme_names(tmp_path, capsys, no_loading):
    (tmp_path / "models" / "vae").mkdir(parents=True)
    (tmp_path / "models" / "vae" / "infinity_vae_d32reg.pth").write_bytes(b"x")
    assert main(["generate", "--models", str(tmp_path / "models"), "--t5", str(tmp_path / "t5"), "--prompt", "a cat",
                 "--out", str(tmp_path / "y.png")]) == 2
    err = capsys.readouterr().err
    assert ("infinity_2b_reg.pth or infinity_2b_reg.safetensors or infinity_8b_weights or infinity_2b_reg_Q8_0.gguf in"
            in err) and f"--t5 {tmp_path / 't5'}" in err
    assert "infinity_vae_d32reg" not in err and "add --tiny" in err


class Captured(Exception):
    pass


def test_style_image_weights_and_paths_with_an_equals_sign_reach_the_engine(models, tmp_path, monkeypatch):
    for name in ("a=b.png", "s.png"):
        Image.new("RGB", (20, 20), (10, 200, 30)).save(tmp_path / name)

    def capture(model, vae, cond, styles, *args, **kwargs):
        raise Captured([s.weight for s in styles])
    monkeypatch.setattr(stylize_command, "stylize", capture)
    with pytest.raises(Captured) as got:
        main(["stylize", *_flags(models), "--content", "a cat", "--style", "ink", "--out", str(tmp_path / "o.png"),
              "--style-image", str(tmp_path / "a=b.png"), "--style-image", f"{tmp_path / 's.png'}=0.5",
              "--style-image", f"{tmp_path / 'a=b.png'}=2"])
    assert got.value.args[0] == [1.0, 0.5, 2.0]


def test_every_option_has_help_and_says_its_default_once():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings} has no help"
            said = " ".join(sub._get_formatter()._format_action(action).split())
            assert said.count("default") <= 1, f"{name}: {said}"
            for nothing in ("(default: None)", "(default: False)", "(default: [])", "(default: )"):
                assert nothing not in said, f"{name}: {said}"
        if any("--pn" in action.option_strings for action in sub._actions):
            assert "(default: 1M)" in " ".join(sub.format_help().split())


def test_tiny_runs_the_pipeline_without_model_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "tiny.png"
    assert main(["generate", "--tiny", "--pn", "0.06M", "--prompt", "a cat", "--out", str(out)]) == 0
    assert "NOISE FROM UNTRAINED WEIGHTS" in capsys.readouterr().out and Image.open(out).size == (256, 256)


def test_installed_as_the_readme_says_it_runs_from_any_folder(tmp_path):
    """`pip install -e .` (here into a target folder, from a copy) puts infinity_core on the path."""
    source = tmp_path / "src"
    shutil.copytree(REPO / "infinity_core", source / "infinity_core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", source)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(tmp_path / "site"), str(source)], check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-m", "infinity_core", "generate", "--prompt", "a cat", "--out", "x.png"],
                            cwd=elsewhere, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert result.returncode == 2 and "Model files not found" in result.stderr and "--tiny" in result.stderr
