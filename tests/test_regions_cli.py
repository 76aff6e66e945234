"""`python -m infinity_core stylize --regions`: semantic style regions from the command line."""
import pytest
from PIL import Image

from infinity_core import schedules
from infinity_core.cli import main
from infinity_core.tiny import write_tiny_models


@pytest.fixture(scope="module")
def flags(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    write_tiny_models(str(folder))
    paths = {sub: next((folder / sub).iterdir()) for sub in ("infinity", "vae", "text_encoders")}
    return ["--transformer", str(paths["infinity"]), "--vae", str(paths["vae"]), "--t5", str(paths["text_encoders"]),
            "--pn", "0.06M", "--fine-steps", "4-6", "--content", "a house", "--style", "three styles"]


def test_regions_stylize_writes_the_image_and_its_region_map(flags, tmp_path):
    styles = []
    for i, colour in enumerate(((200, 30, 30), (20, 90, 220), (240, 200, 40))):
        picture = Image.new("RGB", (90, 60), colour)
        picture.paste((250, 250, 250), (0, 0, 45, 30))
        picture.save(tmp_path / f"s{i}.png")
        styles += ["--style-image", str(tmp_path / f"s{i}.png")]
    out = tmp_path / "styled.png"
    assert main(["stylize", *flags, *styles, "--regions", "auto", "--region-attention", "hard", "--out", str(out)]) == 0
    height, width = schedules.schedule(1.0, "0.06M").image_hw
    assert Image.open(out).size == (width, height)
    region_map = Image.open(tmp_path / "styled_regions.png")
    assert region_map.size[0] > width // 2 and region_map.mode == "RGB"


def test_a_bad_region_count_is_one_clear_line(flags, tmp_path, capsys):
    assert main(["stylize", *flags, "--regions", "12", "--out", str(tmp_path / "x.png")]) == 2
    assert "give 'auto' or a number of regions from 1 to 8" in capsys.readouterr().err
