"""`python -m infinity_core`: the engine from files, without ComfyUI, on the tiny model set."""
import numpy as np
import pytest
from PIL import Image

from infinity_core import schedules
from infinity_core.__main__ import main
from infinity_core.tiny import write_tiny_models


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
    code = main(["stylize", *_flags(models), "--content", "a cat", "--style", "ink", "--key-steps", "2-",
                 "--out", str(tmp_path / "x.png")])
    assert code == 2
    assert "Could not read the step list '2-'" in capsys.readouterr().err
    assert main(["generate", "--models", str(tmp_path / "none"), "--prompt", "a cat", "--out", str(tmp_path / "y.png")]) == 2
    assert "put it in" in capsys.readouterr().err
