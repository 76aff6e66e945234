"""`python -m infinity_core stylize --regions`: semantic style regions from the command line."""
import numpy as np
import pytest
from PIL import Image

from infinity_core import schedules
from infinity_core.cli import main
from infinity_core.images import decode_images, load_image, to_pil
from infinity_core.sampler import SamplingSettings
from infinity_core.style import Regions, Stages, StyleReference, encode_prompts, stylize
from infinity_core.style.region_map import draw_region_map
from infinity_core.tiny import write_tiny_models
from infinity_core.weights.model_files import load_models


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
    # the image and the map are the engine's for the same files and settings (seed 0, 2B's tau 0.5)
    model, vae, t5 = load_models({"transformer": flags[1], "vae": flags[3], "t5": flags[5]})
    cond = encode_prompts(t5, "a house", "three styles")
    found = []
    codes = stylize(model, vae, cond, [StyleReference(load_image(path)) for path in styles[1::2]],
                    Stages(fine_steps=frozenset({4, 5, 6})), schedules.schedule(1.0, "0.06M"), [0],
                    SamplingSettings(cfg=3.0, tau=0.5, top_k=900, top_p=0.97),
                    regions=Regions(count=None, hard=True), on_regions=found.append)
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(to_pil(decode_images(vae, codes)[0])))
    assert len(found) == 1 and found[0].plan.content.count >= 2
    assert np.array_equal(np.asarray(Image.open(tmp_path / "styled_regions.png")),
                          np.asarray(draw_region_map(found[0])))


def test_a_bad_region_count_is_one_clear_line(flags, tmp_path, capsys):
    assert main(["stylize", *flags, "--regions", "12", "--out", str(tmp_path / "x.png")]) == 2
    assert "give 'auto' or a number of regions from 1 to 8" in capsys.readouterr().err
