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
    with pytest.raises(rw.WorkflowError, match="LoadImage: Could not read the image"):
        rw._load_image("notes.png", "image", [tmp_path])


def _photo(tmp_path, orientation: int, suffix: str = ".png"):
    """A 40x20 picture (red left, blue right, a green top row) saved with an EXIF orientation."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    pixels[0] = (0, 255, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"phone{suffix}"
    Image.fromarray(pixels).save(path, exif=exif)
    return path, pixels


@pytest.mark.parametrize("orientation, upright", [
    (1, lambda a: a), (3, lambda a: a[::-1, ::-1]),
    (6, lambda a: np.rot90(a, k=-1)),   # stored turned left: shown turned a quarter clockwise
    (8, lambda a: np.rot90(a, k=1)), (2, lambda a: a[:, ::-1])])
def test_a_photo_comes_in_upright_by_its_exif_orientation(tmp_path, orientation, upright):
    path, pixels = _photo(tmp_path, orientation)
    expected = upright(pixels).astype(np.float32) / 255
    assert np.array_equal(load_image(str(path)).numpy(), expected)
    rw.load_pack()
    (image, _), _ = rw._load_image(path.name, "image", [tmp_path])
    assert np.array_equal(image[0].numpy(), expected)


def test_a_large_picture_is_reduced_by_a_whole_factor_as_it_is_read(tmp_path):
    """Shorter side 4200 px: reduced 2x (2x2 pixel means, rounded) to 2100 px, still more than any output needs."""
    y, x = np.mgrid[0:4200, 0:6300]
    grey = ((x // 7 + y // 5) % 256).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "big.png")
    expected = np.floor(grey.reshape(2100, 2, 3150, 2).astype(np.float64).mean(axis=(1, 3)) + 0.5) / 255
    got = load_image(str(tmp_path / "big.png")).numpy()
    assert got.shape == (2100, 3150, 3)
    assert np.abs(got[..., 0] - expected).max() < 1e-6
    sixteen = (grey.astype(np.uint16) * 257)  # the same picture in 16 bits keeps its brightness when reduced
    Image.fromarray(sixteen).save(tmp_path / "big16.png")
    assert np.abs(load_image(str(tmp_path / "big16.png")).numpy()[..., 0] - expected).max() < 1 / 255
    # a JPEG is decoded at the reduced size directly (its own DCT scaling: close to the mean, not equal)
    Image.fromarray(grey).save(tmp_path / "big.jpg", quality=95)
    full = np.asarray(Image.open(tmp_path / "big.jpg").convert("L"), dtype=np.float64)
    got = load_image(str(tmp_path / "big.jpg")).numpy()
    assert got.shape == (2100, 3150, 3)
    assert np.abs(got[..., 0] - full.reshape(2100, 2, 3150, 2).mean(axis=(1, 3)) / 255).max() <= 2 / 255
