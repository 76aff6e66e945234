"""Image files to tensors: every mode and bit depth keeps its brightness."""
import numpy as np
import pytest
from PIL import Image

import run_workflow as rw
from infinity_core.errors import InfinityError
from infinity_core.images import load_image


@pytest.fixture
def ramps(tmp_path):
    """The same left-to-right ramp from black to white, saved as 8-bit and as 16-bit grey PNGs."""
    ramp = np.linspace(0.0, 1.0, 256 * 32).reshape(32, 256)
    Image.fromarray((ramp * 255).round().astype(np.uint8)).save(tmp_path / "ramp8.png")
    Image.fromarray((ramp * 65535).round().astype(np.uint16)).save(tmp_path / "ramp16.png")
    return tmp_path / "ramp8.png", tmp_path / "ramp16.png"


def test_a_big_endian_16_bit_tiff_keeps_its_brightness(ramps, tmp_path):
    """16-bit grey stored most significant byte first (Pillow's I;16B, as TIFFs from many tools are)."""
    ramp = (np.linspace(0.0, 1.0, 256 * 32).reshape(32, 256) * 65535).round().astype(">u2")
    Image.frombytes("I;16B", (256, 32), ramp.tobytes()).save(tmp_path / "ramp16be.tif")
    with Image.open(tmp_path / "ramp16be.tif") as opened:
        assert opened.mode == "I;16B"
    eight, big_endian = load_image(str(ramps[0])), load_image(str(tmp_path / "ramp16be.tif"))
    assert abs(big_endian.mean().item() - 0.5) < 0.01 and (eight - big_endian).abs().max() < 1 / 255
    rw.load_pack()
    (through_workflow, _), _ = rw._load_image("ramp16be.tif", "image", [tmp_path])
    assert (through_workflow[0] - big_endian).abs().max() == 0


def test_a_16_bit_png_keeps_its_brightness(ramps):
    eight, sixteen = (load_image(str(p)) for p in ramps)
    assert eight.shape == sixteen.shape == (32, 256, 3)
    assert abs(sixteen.mean().item() - 0.5) < 0.01
    assert (eight - sixteen).abs().max() < 1 / 255


def test_run_workflow_loads_a_16_bit_png_the_same_way(ramps):
    rw.load_pack()
    (eight, _), _ = rw._load_image(ramps[0].name, "image", [ramps[0].parent])
    (sixteen, _), _ = rw._load_image(ramps[1].name, "image", [ramps[1].parent])
    assert abs(sixteen.mean().item() - 0.5) < 0.01 and (eight - sixteen).abs().max() < 1 / 255


def test_a_folder_or_a_text_file_is_not_an_image(tmp_path):
    with pytest.raises(InfinityError, match="is a folder, not an image"):
        load_image(str(tmp_path))
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(InfinityError, match="Could not read the image"):
        load_image(str(tmp_path / "notes.png"))
    rw.load_pack()
    with pytest.raises(rw.WorkflowError, match="not an image"):
        rw._load_image("notes.png", "image", [tmp_path])
