"""The region map, read pixel by pixel: the content picture under its regions (tinted with the
colour of the style each took), borders, numbers large enough to read at half size, and a
legend of which style region each content region took."""
import numpy as np
import pytest
import torch

from infinity_core import schedules
from infinity_core.style import Regions, StyleReference
from infinity_core.style.clustering import Segmentation
from infinity_core.style.region_map import COLOURS, EDGE, INK, LINE, MAP_SIDE, PAD, TINT, draw_region_map
from infinity_core.style.regions import Match, RegionPlan, StyleRegions

SCHEDULE = schedules.schedule(1.0, "0.06M")  # square: the map is 320 x 320
LEFT, RIGHT = (200, 120, 40), (20, 60, 160)  # the content picture: two flat halves


def halves(left, right, side=64) -> torch.Tensor:
    """IMAGE [1, side, side, 3] in [0, 1]: left half one colour, right half another."""
    image = torch.empty(1, side, side, 3)
    image[:, :, :side // 2] = torch.tensor(left) / 255
    image[:, :, side // 2:] = torch.tensor(right) / 255
    return image


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    # Content: region 1 the left half, region 2 the right half (on a 4x4 grid). Region 1 took
    # style 2's region 1, region 2 took style 1's region 2.
    content = Segmentation(torch.tensor([[0, 0, 1, 1]] * 4), 2, {})
    style_regions = Segmentation(torch.tensor([[0, 0, 0, 0]] * 2 + [[1, 1, 1, 1]] * 2), 2, {})
    plan = RegionPlan(content, [style_regions, style_regions],
                      [Match(0, 1, 0, 0.9), Match(1, 0, 1, 0.7)], None)
    styles = [(StyleReference(halves((250, 250, 250), (250, 250, 250))), None),
              (StyleReference(halves((5, 5, 5), (5, 5, 5))), None)]
    regions = StyleRegions(plan, styles, Regions(count=2), SCHEDULE, lambda: halves(LEFT, RIGHT))
    return np.asarray(draw_region_map(regions)).astype(int)


def map_pixel(picture, x, y):
    """A pixel of the 320 x 320 map, which starts under the caption line at the top left."""
    return picture[PAD + LINE + y, PAD + x]


def tinted(content, style) -> np.ndarray:
    return np.array(content) * (1 - TINT) + np.array(COLOURS[style]) * TINT


def test_each_region_shows_the_content_picture_tinted_with_its_styles_colour(picture):
    assert np.abs(map_pixel(picture, 100, 280) - tinted(LEFT, 1)).max() <= 1, "left: content + style 2's colour"
    assert np.abs(map_pixel(picture, 220, 280) - tinted(RIGHT, 0)).max() <= 1, "right: content + style 1's colour"


def test_the_border_between_regions_is_drawn(picture):
    assert tuple(map_pixel(picture, 160, 280)) == EDGE
    assert tuple(map_pixel(picture, 140, 280)) != EDGE


def ink_boxes(picture, colour) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (left, top, right, bottom) of the clumps of pixels of exactly `colour`,
    joined along rows of 40 px."""
    ys, xs = np.nonzero((picture == colour).all(axis=-1))
    boxes = []
    for x, y in sorted(zip(xs.tolist(), ys.tolist())):
        for i, (l, t, r, b) in enumerate(boxes):
            if l - 40 <= x <= r + 40 and t - 40 <= y <= b + 40:
                boxes[i] = (min(l, x), min(t, y), max(r, x), max(b, y))
                break
        else:
            boxes.append((x, y, x, y))
    return boxes


def test_the_region_numbers_on_the_map_read_at_half_size(picture):
    # Each region's number sits inside it, in a box outlined with its style's colour, with digits
    # at least 20 px tall (10 px where a node shows the map at half its size).
    inside_map = [b for b in ink_boxes(picture, INK) if PAD <= b[0] and b[2] < PAD + 320 and b[1] >= PAD + LINE]
    digits = sorted((b for b in inside_map if b[3] - b[1] >= 20), key=lambda b: b[0])
    assert len(digits) == 2, inside_map
    assert digits[0][2] < PAD + 160 < digits[1][0], "one number in each half"


def test_the_legend_says_which_style_region_each_content_region_took(picture):
    # One line per content region, in order: a swatch of the colour of the style it took, then
    # its text, at least 12 px tall (6 px at half size is the least a digit reads at).
    right_part = picture[:, PAD + 320:]
    tops = []
    for colour in (COLOURS[1], COLOURS[0]):  # region 1 -> style 2, region 2 -> style 1
        swatches = [b for b in ink_boxes(right_part, colour) if 12 <= b[2] - b[0] <= 30 and 12 <= b[3] - b[1] <= 30]
        assert len(swatches) == 1, f"one swatch of {colour}"
        left, top, right, bottom = swatches[0]
        line = (right_part[top - 6:bottom + 8, right + 4:] == INK).all(axis=-1)
        rows = np.nonzero(line.any(axis=1))[0]
        assert len(rows) and rows.max() - rows.min() >= 12, f"the text beside the {colour} swatch"
        tops.append(top)
    assert tops[0] < tops[1], "listed by content region"


def test_the_region_map_outlines_every_border_and_tints_each_region_with_its_styles_colour():
    """Four quadrants of the 16x16 final grid, the top-left and bottom-right painted by style 1,
    the others by style 2, over a flat grey picture. The map is 320 px square, 20 px per cell: the
    borders are the pixel rows and columns 159-161, edge-coloured across the whole map."""
    quadrants = (torch.arange(16)[:, None] >= 8).long() * 2 + (torch.arange(16)[None] >= 8).long()
    one = Segmentation(torch.zeros(16, 16, dtype=torch.long), 1, {})
    matches = [Match(0, 0, 0, 0.9), Match(1, 1, 0, 0.8), Match(2, 1, 0, 0.7), Match(3, 0, 0, 0.6)]
    plan = RegionPlan(Segmentation(quadrants, 4, {}), [one, one], matches, None)
    grey = (100, 100, 100)
    styles = [(StyleReference(halves(LEFT, LEFT)), None), (StyleReference(halves(RIGHT, RIGHT)), None)]
    regions = StyleRegions(plan, styles, Regions(count=4), SCHEDULE, lambda: halves(grey, grey))
    picture = np.asarray(draw_region_map(regions)).astype(int)
    assert MAP_SIDE == 320
    area = picture[PAD + LINE:PAD + LINE + 320, PAD:PAD + 320]
    border = [159, 160, 161]
    assert (area[border] == EDGE).all(), "the horizontal border"
    assert (area[:, border] == EDGE).all(), "the vertical border"
    # the pixels beside a border are edge-coloured only where they cross the other border
    assert (area[158] == EDGE).all(1).nonzero()[0].tolist() == border
    assert (area[:, 158] == EDGE).all(1).nonzero()[0].tolist() == border
    for (y, x), style in (((20, 20), 0), ((20, 300), 1), ((300, 20), 1), ((300, 300), 0)):
        assert np.abs(area[y, x] - tinted(grey, style)).max() <= 1, (y, x)
