"""The Stage Probe: per-step prompt swaps against an independent scale loop, and its pictures."""
import pytest
import torch

from infinity_core import schedules
from infinity_core.errors import InfinityError
from infinity_core.probe.run import ProbeRun, pixel_differences, probe, probe_runs
from infinity_core.probe.picture import BAR, BAR_WIDTH, COLUMNS, GAP, LABEL, TILE, difference_plot, probe_grid
from infinity_core.network.quantizer import bits_to_codes, resize
from infinity_core.sampler import SamplingSettings, draw_bits, generate
from infinity_core.network.text import TextBatch
from infinity_core.network.transformer import KVCache
from tiny import random_text, tiny_models

SCHEDULE = schedules.schedule(1.0, "0.06M")  # 7 scales: 1, 2, 4, 6, 8, 12, 16
SETTINGS = SamplingSettings(cfg=3.0, tau=0.5)
BASE, ALTERNATIVE = random_text(3, 1), random_text(5, 2)  # different lengths: their null texts differ too


@pytest.fixture(scope="module")
def model():
    return tiny_models()[0]


@pytest.fixture(scope="module")
def probed(model):
    return probe(model, BASE, ALTERNATIVE, SCHEDULE, 11, SETTINGS)


@torch.no_grad()
def reference_run(model, texts: list[TextBatch], seed: int, negative=None) -> torch.Tensor:
    """A run written out scale by scale, step si conditioned on texts[si] alone: its own start
    token, AdaLN, cross-attention, head and unconditional half; the cache keeps what each step saw."""
    gen = torch.Generator().manual_seed(seed)
    conds = [model.condition(TextBatch.cat([t, model.null_text(t.lens) if negative is None else negative]))
             for t in texts]
    cache, final = KVCache(sum(SCHEDULE.token_counts)), (1, *SCHEDULE.final_grid)
    x = model.start_tokens(conds[0])
    summed = torch.zeros(1, model.config.codebook_dim, *final)
    for si, (h, w) in enumerate(SCHEDULE.scales):
        logits = model.logits(model.forward_scale(x, si, conds[si], SCHEDULE, cache), conds[si]) / SETTINGS.tau_at(si)
        logits = SETTINGS.cfg_at(si) * logits[:1] + (1 - SETTINGS.cfg_at(si)) * logits[1:]
        bits = draw_bits(logits[0], SETTINGS.top_k, SETTINGS.top_p, gen)
        summed = summed + resize(bits_to_codes(bits.view(1, 1, h, w, -1)), final)
        if si + 1 < len(SCHEDULE):
            x = model.embed_codes(resize(summed, (1, *SCHEDULE.scales[si + 1])).flatten(2).transpose(1, 2))
            x = torch.cat([x, x])
    return summed


def test_the_base_image_is_a_plain_run(model, probed):
    assert torch.equal(probed[0], generate(model, BASE, SCHEDULE, [11], SETTINGS).summed_codes)


@pytest.mark.parametrize("step", [0, 2, 6])
def test_a_steps_image_is_the_run_whose_prompt_differs_at_that_step_only(model, probed, step):
    texts = [ALTERNATIVE if si == step else BASE for si in range(len(SCHEDULE))]
    expected = reference_run(model, texts, 11)
    torch.testing.assert_close(probed[1 + step], expected, rtol=0, atol=1e-6)
    assert not torch.allclose(probed[1 + step], probed[0]), "the alternative prompt changed nothing"


def test_the_swap_holds_with_a_negative_prompt(model):
    negative = random_text(4, 3)
    codes = probe(model, BASE, ALTERNATIVE, SCHEDULE, 5, SETTINGS, negative=negative,
                  runs=[ProbeRun(None), ProbeRun(3)])
    expected = reference_run(model, [ALTERNATIVE if si == 3 else BASE for si in range(len(SCHEDULE))], 5, negative)
    torch.testing.assert_close(codes[1], expected, rtol=0, atol=1e-6)
    assert torch.equal(codes[0], generate(model, BASE, SCHEDULE, [5], SETTINGS, negative=negative).summed_codes)


def test_steps_before_the_swapped_one_are_the_base_images(model):
    seen = {}
    probe(model, BASE, ALTERNATIVE, SCHEDULE, 11, SETTINGS, runs=probe_runs(SCHEDULE, [4]),
          callback=lambda run, event: seen.__setitem__((run.step, event.step), event.summed_codes.clone()))
    assert sorted({run for run, _ in seen}, key=str) == [4, None]
    for si in range(4):
        assert torch.equal(seen[(4, si)], seen[(None, si)])
    assert not torch.equal(seen[(4, 4)], seen[(None, 4)])


def test_the_alternative_on_every_step_is_a_plain_run_of_the_alternative(model):
    everywhere = generate(model, BASE, SCHEDULE, [2], SETTINGS, text_at=lambda si: ALTERNATIVE).summed_codes
    assert torch.equal(everywhere, generate(model, ALTERNATIVE, SCHEDULE, [2], SETTINGS).summed_codes)


def test_the_same_prompt_twice_changes_nothing(model):
    same = TextBatch(BASE.features.clone(), list(BASE.lens))
    codes = probe(model, BASE, same, SCHEDULE, 11, SETTINGS)
    assert len(codes) == len(SCHEDULE) + 1 and all(torch.equal(c, codes[0]) for c in codes)


def test_probe_runs_and_their_labels():
    runs = probe_runs(SCHEDULE)
    assert [r.step for r in runs] == [None, 0, 1, 2, 3, 4, 5, 6]
    assert [r.label(SCHEDULE) for r in runs[:4]] == ["base", "step 0: 1x1", "step 1: 2x2", "step 2: 4x4"]
    portrait = schedules.schedule(2.0, "0.06M")  # 1:2 portrait: twice as high as wide
    assert probe_runs(portrait)[4].label(portrait) == "step 3: 3x6", "width x height, as ComfyUI writes sizes"
    assert [r.step for r in probe_runs(SCHEDULE, [5, 2, 5])] == [None, 2, 5]
    with pytest.raises(InfinityError, match="0-6"):
        probe_runs(SCHEDULE, [7])
    with pytest.raises(InfinityError, match="one base prompt"):
        probe(None, TextBatch.cat([BASE, BASE]), ALTERNATIVE, SCHEDULE, 0)


def test_pixel_differences_are_mean_absolute_differences():
    base = torch.zeros(4, 4, 3)
    images = torch.stack([base, base + 0.25, torch.eye(4)[..., None].expand(4, 4, 3)])
    assert pixel_differences(base, images) == [0.0, 0.25, 0.25]


def test_the_grid_places_each_image_over_its_label_in_order():
    count = 9
    images = torch.stack([torch.full((64, 32, 3), i / count) for i in range(count)])  # 2:1 portrait
    grid = probe_grid(images, [f"tile {i}" for i in range(count)])[0]
    rows = 2
    columns = -(-count // rows)
    cell_w, cell_h = TILE // 2, TILE + LABEL
    assert grid.shape == (rows * cell_h + (rows + 1) * GAP, columns * cell_w + (columns + 1) * GAP, 3)
    assert columns <= COLUMNS
    for i in range(count):
        x = GAP + (i % columns) * (cell_w + GAP) + cell_w // 2
        y = GAP + (i // columns) * (cell_h + GAP)
        assert torch.allclose(grid[y + TILE // 2, x], torch.tensor(round(255 * i / count) / 255), atol=1e-6)
        band = grid[y + TILE:y + cell_h, x - cell_w // 2:x + cell_w // 2]
        assert band.max() > 0.8, f"tile {i} has no label"
    with pytest.raises(ValueError):
        probe_grid(images, ["one label"])


def test_the_plot_bars_follow_the_differences():
    plot = difference_plot([0, 1, 2], [0.1, 0.2, 0.0])[0]
    bar = torch.tensor(BAR) / 255
    is_bar = (plot - bar).abs().amax(-1) < 1e-6
    columns = is_bar.any(0).nonzero().flatten()
    first = columns[0].item()
    heights = [int(is_bar[:, first + i * BAR_WIDTH].sum()) for i in range(3)]
    assert heights[0] > 20 and heights[1] == pytest.approx(2 * heights[0], abs=1)
    assert heights[2] == 0, "a zero difference draws no bar"
