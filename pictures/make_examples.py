"""Draws the pictures the shipped workflows load and the README shows (PIL only, fixed seeds, no third-party art).

  python3 pictures/make_examples.py   # rewrites the .png files next to this script
"""
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIZE = 512


def waves() -> Image.Image:
    """Bands of warm and cool colour, like a screen print."""
    palette = [(244, 211, 94), (238, 150, 75), (249, 87, 56), (13, 59, 102), (94, 164, 182), (250, 240, 202)]
    picture = Image.new("RGB", (SIZE, SIZE), palette[-1])
    pen = ImageDraw.Draw(picture)
    for band in range(15):  # top to bottom, each band covering the rest below it
        base = band * 38 - 20
        top = [(x, base + 22 * math.sin(x / 47 + band * 0.9)) for x in range(0, SIZE + 8, 8)]
        pen.polygon(top + [(SIZE, SIZE), (0, SIZE)], fill=palette[band % 5], outline=(30, 30, 40))
    return picture


def mosaic() -> Image.Image:
    """Tilted tiles with dark grout, like stained glass."""
    rng = random.Random(7)
    palette = [(46, 134, 171), (162, 59, 114), (241, 143, 1), (199, 62, 29), (59, 31, 43), (120, 188, 97)]
    picture = Image.new("RGB", (SIZE, SIZE), (25, 20, 30))
    pen = ImageDraw.Draw(picture)
    step = 48
    for gy in range(-1, SIZE // step + 1):
        for gx in range(-1, SIZE // step + 1):
            cx, cy, angle = gx * step + step / 2, gy * step + step / 2, rng.uniform(0, math.pi / 2)
            corners = [(cx + 0.8 * step * math.cos(angle + k * math.pi / 2),
                        cy + 0.8 * step * math.sin(angle + k * math.pi / 2)) for k in range(4)]
            pen.polygon(corners, fill=rng.choice(palette), outline=(25, 20, 30), width=4)
    return picture


def dots() -> Image.Image:
    """A pointillist landscape: a sky of blue and white dots over a field of green and yellow ones."""
    rng = random.Random(11)
    sky, field = [(70, 120, 200), (140, 180, 230), (235, 240, 250)], [(60, 130, 60), (150, 190, 70), (235, 200, 60)]
    picture = Image.new("RGB", (SIZE, SIZE), (245, 240, 225))
    pen = ImageDraw.Draw(picture)
    for _ in range(2600):
        x, y = rng.uniform(0, SIZE), rng.uniform(0, SIZE)
        horizon = SIZE * 0.55 + 30 * math.sin(x / 90)
        r = rng.uniform(4, 8)
        pen.ellipse([x - r, y - r, x + r, y + r], fill=rng.choice(sky if y < horizon else field))
    return picture


def house() -> Image.Image:
    """A plain scene to restyle: sky, sun, hills and a house."""
    picture = Image.new("RGB", (640, 480), (150, 200, 235))
    pen = ImageDraw.Draw(picture)
    pen.ellipse([470, 50, 570, 150], fill=(255, 215, 80))
    pen.ellipse([-200, 300, 420, 700], fill=(90, 160, 80))
    pen.ellipse([250, 320, 900, 760], fill=(70, 140, 70))
    pen.rectangle([200, 250, 380, 390], fill=(225, 200, 160), outline=(80, 60, 50), width=3)
    pen.polygon([(185, 255), (290, 170), (395, 255)], fill=(170, 60, 50), outline=(80, 40, 30))
    pen.rectangle([270, 320, 310, 390], fill=(110, 70, 40))
    for x in (220, 330):
        pen.rectangle([x, 280, x + 32, 310], fill=(190, 225, 245), outline=(80, 60, 50), width=2)
    return picture


if __name__ == "__main__":
    for name, draw in (("infinitystyle_style_waves", waves), ("infinitystyle_style_mosaic", mosaic),
                       ("infinitystyle_style_dots", dots), ("infinitystyle_content_house", house)):
        path = HERE / f"{name}.png"
        draw().save(path, optimize=True)
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
