"""Semantic style regions: segmentation, matching, and the regional attention and Feature
Initialization, checked on the tensors attention actually used."""
import pytest
import torch
import torch.nn.functional as F

from infinity_core import schedules
from infinity_core.errors import InfinityError
from infinity_core.images import preview_image
from infinity_core.network import quantizer
from infinity_core.sampler import SamplingSettings, generate
from infinity_core.style import BITS_CACHE, Regions, Stages, StyleConditioning, StyleReference, stylize
from infinity_core.style import regions as regions_module
from infinity_core.style.clustering import Segmentation, segment, silhouette
from infinity_core.style.regions import (FeatureCache, Match, match_regions, plan_regions,
                                         sample_content_ahead)
from test_style import AttentionLog
from tiny import random_image, random_text, tiny_models

SCHEDULE = schedules.schedule(1.0, "0.06M")  # 7 scales up to 16x16; key steps 2, 3 are 4x4 and 6x6
FINE = frozenset({4, 5, 6})
SETTINGS = SamplingSettings(cfg=3.0, tau=0.5)
ARI_BOUND = 0.9
STYLES = tuple(StyleReference(random_image(96, 96, seed)) for seed in (20, 21, 22))


@pytest.fixture(scope="module")
def models():
    return tiny_models()


@pytest.fixture(scope="module")
def cond():
    return StyleConditioning(random_text(3, 1), random_text(4, 2), random_text(6, 3), None, {})


def run(models, cond, stages=Stages(fine_steps=FINE), styles=STYLES, seeds=(7,), **kw):
    model, vae = models
    return stylize(model, vae, cond, list(styles), stages, SCHEDULE, list(seeds), SETTINGS, **kw)


def adjusted_rand_index(a: torch.Tensor, b: torch.Tensor) -> float:
    """Hubert-Arabie ARI of two labellings: 1 for the same partition, about 0 for chance."""
    a, b = a.flatten(), b.flatten()
    table = torch.zeros(int(a.max()) + 1, int(b.max()) + 1, dtype=torch.float64)
    table.index_put_((a, b), torch.ones(len(a), dtype=torch.float64), accumulate=True)
    pairs = lambda x: (x * (x - 1) / 2).sum()  # noqa: E731
    index, rows, cols, total = pairs(table), pairs(table.sum(1)), pairs(table.sum(0)), len(a) * (len(a) - 1) / 2
    expected = rows * cols / total
    return float((index - expected) / ((rows + cols) / 2 - expected))


def test_adjusted_rand_index_reads_as_expected():
    same = torch.tensor([0, 0, 1, 1, 2, 2])
    assert adjusted_rand_index(same, torch.tensor([5, 5, 3, 3, 4, 4]) % 3) == pytest.approx(1.0)
    assert adjusted_rand_index(same, torch.tensor([0, 1, 2, 0, 1, 2])) < 0


def planted(labels: torch.Tensor, seed: int, dims: int = 48, noise: float = 0.6) -> torch.Tensor:
    """Features [h, w, dims]: one random centre per planted region plus Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(int(labels.max()) + 1, dims, generator=gen)
    return centres[labels] + noise * torch.randn(*labels.shape, dims, generator=gen)


def stripes(k: int, size: int = 20) -> torch.Tensor:
    return (torch.arange(size) * k // size)[:, None].expand(size, size).clone()


def blobs(size: int = 20) -> torch.Tensor:
    """Four quadrants and a centre square: five regions."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    labels = (y >= size // 2).long() * 2 + (x >= size // 2).long()
    centre = (abs(y - size / 2 + 0.5) < size / 5) & (abs(x - size / 2 + 0.5) < size / 5)
    return torch.where(centre, 4, labels)


@pytest.mark.parametrize("truth", [stripes(2), stripes(3), blobs(), stripes(7), stripes(8, size=24)],
                         ids=["2", "3", "5-blobs", "7", "8"])
def test_segmentation_recovers_planted_regions_and_their_number(truth):
    found = segment(planted(truth, seed=int(truth.max())))
    ari = adjusted_rand_index(found.labels, truth)
    print(f"planted {int(truth.max()) + 1}: found {found.count} regions, ARI {ari:.3f}")
    assert sorted(found.silhouettes) == [2, 3, 4, 5, 6, 7, 8]  # auto tries every count from 2 to 8
    assert found.count == int(truth.max()) + 1, found.silhouettes
    assert ari > ARI_BOUND
    assert found.labels[0, 0] == 0 and found.labels.shape == truth.shape  # numbered in raster order


def test_silhouette_of_a_small_labelling_is_the_hand_computed_value():
    """+x and +y form region 0, -x and -y region 1 (cosine distance d = 1 - cos). For +x:
    a = d(+x, +y) / (2 - 1) = 1 (the mean over the other member), b = (d(+x, -x) + d(+x, -y)) / 2 =
    (2 + 1) / 2 = 1.5, s = (b - a) / b = 1/3; by symmetry every point scores 1/3."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    assert silhouette(x, torch.tensor([0, 0, 1, 1])) == pytest.approx(1 / 3)


def brute_force_silhouette(x: torch.Tensor, labels: list[int]) -> float:
    """The textbook silhouette, point by point (a token alone in its region scores 0)."""
    d = lambda i, j: max(0.0, 1.0 - float(x[i] @ x[j]))  # noqa: E731
    scores = []
    for i, own in enumerate(labels):
        mates = [j for j, label in enumerate(labels) if label == own and j != i]
        if not mates:
            scores.append(0.0)
            continue
        a = sum(d(i, j) for j in mates) / len(mates)
        b = min(sum(d(i, j) for j, label in enumerate(labels) if label == other) / labels.count(other)
                for other in set(labels) - {own})
        scores.append((b - a) / max(a, b))
    return sum(scores) / len(scores)


def test_silhouette_equals_the_point_by_point_definition():
    x = F.normalize(torch.randn(13, 5, generator=torch.Generator().manual_seed(4)), dim=1)
    labels = [0, 2, 1, 0, 0, 2, 1, 1, 2, 0, 3, 1, 2]  # region 3 is a single token
    assert silhouette(x, torch.tensor(labels)) == pytest.approx(brute_force_silhouette(x, labels), abs=1e-6)


def test_a_given_region_count_is_used_and_one_region_is_the_whole_image():
    truth = blobs()
    assert segment(planted(truth, 1), count=3).count == 3
    whole = segment(planted(truth, 1), count=1)
    assert whole.count == 1 and not whole.labels.any()


def _segmentation(labels):
    return Segmentation(labels, int(labels.max()) + 1, {})


def test_matching_finds_planted_pairs_across_styles():
    gen = torch.Generator().manual_seed(3)
    centres = torch.randn(6, 32, generator=gen)
    noisy = lambda labels, ids: centres[ids][labels] + 0.3 * torch.randn(*labels.shape, 32, generator=gen)  # noqa: E731
    content = stripes(3)                          # content regions show centres 0, 1, 2
    first, second = stripes(2), stripes(3)
    features = [noisy(first, torch.tensor([2, 4])), noisy(second, torch.tensor([5, 0, 3]))]
    matches = match_regions(noisy(content, torch.tensor([0, 1, 2])), _segmentation(content), features,
                            [_segmentation(first), _segmentation(second)], [1.0, 1.0], position_weight=0.0)
    assert [(m.region, m.style, m.style_region) for m in matches] == [(0, 1, 1), (1, 0, 1), (2, 0, 0)]
    assert all(-1 <= m.score <= 1 for m in matches)


def test_matching_centres_the_features_on_the_mean_over_all_images():
    """Features that share a large common offset (as a model's features do) match as they do
    without it, with the same scores: the offset is removed before the cosines."""
    gen = torch.Generator().manual_seed(3)
    centres = torch.randn(6, 32, generator=gen)
    # each style region resembles one content centre (cosine about 0.8), with noise per token
    like = centres + 0.75 * torch.randn(6, 32, generator=gen)
    def noisy(table, labels, ids):
        return table[ids][labels] + 0.3 * torch.randn(*labels.shape, 32, generator=gen)
    content, first, second = stripes(3), stripes(2), stripes(3)
    features = [noisy(centres, content, torch.tensor([0, 1, 2])), noisy(like, first, torch.tensor([2, 1])),
                noisy(like, second, torch.tensor([5, 0, 3]))]
    offset = 40 * torch.randn(32, generator=gen)
    segs = [_segmentation(first), _segmentation(second)]
    plain = match_regions(features[0], _segmentation(content), features[1:], segs, [1.0, 1.0], position_weight=0.0)
    shifted = match_regions(features[0] + offset, _segmentation(content), [f + offset for f in features[1:]], segs,
                            [1.0, 1.0], position_weight=0.0)
    planted_pairs = [(0, 1, 1), (1, 0, 1), (2, 0, 0)]
    assert [(m.region, m.style, m.style_region) for m in plain] == planted_pairs
    assert [(m.region, m.style, m.style_region) for m in shifted] == planted_pairs
    assert [m.score for m in shifted] == pytest.approx([m.score for m in plain], abs=1e-4)
    assert max(m.score for m in plain) < 0.95, "the planted pairs are not identical: the scores must show it"


def test_position_weight_and_style_weight_break_ties():
    content = stripes(2)
    twin = torch.zeros(20, 20, 8)
    twin[..., 0] = 1.0
    twin[10:, ..., 1] = 1.0            # the content's bottom half differs from its top
    content_seg = _segmentation(content)
    flipped = torch.flip(twin, dims=[0])   # the same regions, upside down
    segs = [_segmentation(content), _segmentation(torch.flip(content, dims=[0]))]
    near = match_regions(twin, content_seg, [twin, flipped], segs, [1.0, 1.0], position_weight=0.5)
    assert [m.style for m in near] == [0, 0]          # equal features: the one in the same place wins
    heavier = match_regions(twin, content_seg, [twin, flipped], segs, [1.0, 2.0], position_weight=0.0)
    assert [m.style for m in heavier] == [1, 1]       # equal features and no position term: the prior decides


def test_one_style_and_one_region_is_todays_single_style_run(models, cond):
    plans = []
    today = run(models, cond, styles=STYLES[:1])
    regional = run(models, cond, styles=STYLES[:1], regions=Regions(count=1), on_regions=plans.append)
    assert torch.equal(regional, today)
    assert plans[0].plan.content_bits is not None  # the content path was run ahead and replayed


def test_soft_mode_at_strength_zero_is_the_global_mix(models, cond):
    stages = Stages(feature_init=False, fine_steps=FINE)  # Feature Initialization follows the regions at any strength
    weighted = (STYLES[0], StyleReference(STYLES[1].image, weight=2.0), STYLES[2])
    global_mix = run(models, cond, stages, styles=weighted)
    assert torch.equal(run(models, cond, stages, styles=weighted, regions=Regions(strength=0.0)), global_mix)
    assert not torch.equal(run(models, cond, stages, styles=weighted, regions=Regions(strength=3.0)), global_mix)


@pytest.fixture
def alternating(monkeypatch):
    """The matching, fixed: content region r -> the (r mod n)-th matchable style, its region r mod k."""
    def fixed(content_features, content, style_features, styles, weights, position_weight):
        candidates = [i for i, seg in enumerate(styles) if seg is not None]
        picks = [candidates[r % len(candidates)] for r in range(content.count)]
        return [Match(r, s, r % styles[s].count, 1.0) for r, s in enumerate(picks)]
    monkeypatch.setattr(regions_module, "match_regions", fixed)


def painted(plan, style: int, grid) -> torch.Tensor:
    """[h*w]: the share of each cell in content regions matched to `style`."""
    inside = torch.zeros_like(plan.content.labels, dtype=torch.float32)
    for m in plan.matches:
        if m.style == style:
            inside[plan.content.labels == m.region] = 1
    return F.adaptive_avg_pool2d(inside[None, None], grid).flatten()


def first_edited(log, tokens):
    """The first layer call at a key step where the generation row was edited (the passes that
    find the regions run earlier, unedited)."""
    return next(layer for layer in log.self_attention(tokens) if layer[1])


def attention_weights(q, k, mask):
    return torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1)


def test_hard_mode_keeps_each_token_off_styles_outside_its_match(models, cond, monkeypatch, alternating):
    plans = []
    log = AttentionLog(monkeypatch)
    run(models, cond, Stages(feature_init=False, query_sharing=False, fine_steps=FINE), regions=Regions(count=4, hard=True),
        on_regions=plans.append)
    plan = plans[0].plan
    assert {m.style for m in plan.matches} == {0, 1, 2}
    for step in (2, 3):
        grid = SCHEDULE.scales[step]
        allowed = torch.stack([painted(plan, s, grid) > 0 for s in range(3)])        # [styles, L_q]
        assert not allowed.all(), "some token must be outside some style's match for the check to bite"
        layers = log.self_attention(grid[0] * grid[1])
        assert layers
        for (q, k, v), edits in layers:
            keys = k.shape[2]  # every path's row caches as many tokens
            for q_used, k_used, v_used, mask in edits:
                weights = attention_weights(q_used, k_used, mask)                   # [H, L_q, L_k]
                for s in range(3):
                    cols = weights[..., keys * (1 + s):keys * (2 + s)]
                    assert cols[:, ~allowed[s]].eq(0).all()
                    assert cols[:, allowed[s]].sum(-1).gt(0).all()


def test_soft_mode_pulls_towards_the_matched_region(models, cond, monkeypatch, alternating):
    plans = []
    log = AttentionLog(monkeypatch)
    run(models, cond, Stages(feature_init=False, query_sharing=False, fine_steps=FINE), regions=Regions(count=3, strength=2.0),
        on_regions=plans.append)
    plan = plans[0].plan
    (q, k, v), edits = first_edited(log, 16)
    mask = edits[0][3]
    keys = k.shape[2]
    for s in range(3):
        cols = mask[:, keys * (1 + s):keys * (2 + s)]
        assert torch.isfinite(cols).all() and cols.max() <= 0
        outside = painted(plan, s, (4, 4)) == 0
        torch.testing.assert_close(cols[outside], torch.full_like(cols[outside], -2.0))  # strength in nats


def test_a_style_mask_overrides_the_matching_inside_it(models, cond, monkeypatch, alternating):
    mask = torch.zeros(SCHEDULE.image_hw)
    mask[:, :SCHEDULE.image_hw[1] // 2] = 1  # left half
    styles = (STYLES[0], STYLES[1], StyleReference(STYLES[2].image, mask=mask))
    plans, seen = [], {}
    log = AttentionLog(monkeypatch)
    run(models, cond, Stages(query_sharing=False, fine_steps=FINE), styles=styles, regions=Regions(count=4),
        on_regions=plans.append, callback=lambda e: seen.setdefault(e.step, e.summed_codes.clone()))
    plan = plans[0].plan
    assert {m.style for m in plan.matches} == {0, 1} and plan.styles[2] is None  # the masked style is not matched
    (q, k, v), edits = first_edited(log, 16)
    bias, keys = edits[0][3], k.shape[2]
    left = torch.arange(16) % 4 < 2
    for s in (0, 1):  # the matched styles: off inside the mask
        assert torch.isneginf(bias[left, keys * (1 + s):keys * (2 + s)]).all()
    masked = bias[:, keys * 3:]
    assert (masked[left] == 0).all() and torch.isneginf(masked[~left]).all()
    # Feature Initialization: the 2x2 grid's left column takes the masked style's bits
    bits = BITS_CACHE.bits(models[1], styles[2].image, SCHEDULE)[1].view(2, 2, -1)
    assert torch.equal(_step1_bits(seen)[:, 0], bits[:, 0].long())


def _step1_bits(seen) -> torch.Tensor:
    """The generation row's bits [2, 2, d] at step 1, from the summed codes after steps 0 and 1:
    the corners of the upsampled 2x2 codes are the cells' own values, and a code's sign is its bit."""
    codes = (seen[1] - seen[0])[0, :, 0]                                   # [d, H, W]
    corners = codes[:, [0, -1]][:, :, [0, -1]]                             # [d, 2, 2]
    return (corners > 0).long().permute(1, 2, 0)


def test_feature_initialization_takes_the_matched_styles_bits_per_region(models, cond, alternating):
    content = torch.cat([STYLES[0].image[:, :48], STYLES[1].image[:, 48:]], dim=1)
    plans, seen = [], {}
    run(models, cond, Stages(key_sharing=False, query_sharing=False, fine_steps=FINE), styles=STYLES[:2], content_image=content,
        regions=Regions(count=2), on_regions=plans.append,
        callback=lambda e: seen.setdefault(e.step, e.summed_codes.clone()))
    plan = plans[0].plan
    final = (1, *SCHEDULE.final_grid)
    expected = 0
    used = set()
    for step in (0, 1):
        grid = SCHEDULE.scales[step]
        shares = torch.stack([painted(plan, s, grid) for s in range(2)])
        best = shares.argmax(0).view(grid)
        used |= set(best.flatten().tolist())
        style_bits = [BITS_CACHE.bits(models[1], ref.image, SCHEDULE)[step].view(*grid, -1) for ref in STYLES[:2]]
        bits = torch.where(best[..., None] == 0, style_bits[0], style_bits[1])
        expected = expected + quantizer.resize(quantizer.bits_to_codes(bits.view(1, 1, *grid, -1)), final)
    assert used == {0, 1}, "both styles must paint some cell for the check to bite"
    torch.testing.assert_close(seen[1], expected)


def test_the_model_is_plain_again_after_a_failure_in_a_regions_run(models, cond, monkeypatch):
    model = models[0]
    before = generate(model, cond.generation, SCHEDULE, [3], SETTINGS).summed_codes

    def fail(event):
        if event.step == 3:
            raise KeyboardInterrupt("injected in the stylized run")
    with pytest.raises(KeyboardInterrupt):
        run(models, cond, regions=Regions(), callback=fail)
    assert model.attention_control is None

    draws = iter(range(100))
    real_draw = regions_module.draw_bits

    def failing_draw(*args):
        if next(draws) == 5:
            raise KeyboardInterrupt("injected while the content path runs ahead")
        return real_draw(*args)
    monkeypatch.setattr(regions_module, "draw_bits", failing_draw)
    with pytest.raises(KeyboardInterrupt, match="runs ahead"):
        run(models, cond, regions=Regions())
    assert model.attention_control is None
    assert torch.equal(generate(model, cond.generation, SCHEDULE, [3], SETTINGS).summed_codes, before)


def test_style_features_are_read_once_across_seeds(models, cond):
    model, vae = models
    other = StyleConditioning(random_text(5, 9), cond.style, cond.generation, None, {})  # features are per prompt
    passes = regions_module.FEATURE_CACHE.passes
    plans = []
    run(models, other, styles=STYLES[:2], seeds=(1, 2), regions=Regions(), on_regions=plans.append)
    assert regions_module.FEATURE_CACHE.passes == passes + 1
    # both seeds used the entry a first reading makes: the styles' features at the last fine step (6)
    fresh = FeatureCache().features(model, vae, other.content, [s.image for s in STYLES[:2]], SCHEDULE, 6,
                                    Regions().layers_for(model.config.depth))
    for found in plans:
        for style, features in zip(found.plan.styles, fresh):
            assert torch.equal(style.labels, segment(features.features).labels)


def test_the_feature_cache_keeps_each_feature_step_apart(models, cond):
    """A style read at one step is not handed out for another (the fine steps moved, say)."""
    model, vae = models
    image, layers = random_image(80, 80, 30), (1, 2)
    cache = FeatureCache()
    at4 = cache.features(model, vae, cond.content, [image], SCHEDULE, 4, layers)[0].features
    at5 = cache.features(model, vae, cond.content, [image], SCHEDULE, 5, layers)[0].features
    assert at4.shape[:2] == (8, 8) and at5.shape[:2] == (12, 12) and cache.passes == 2
    assert torch.equal(at5, FeatureCache().features(model, vae, cond.content, [image], SCHEDULE, 5, layers)[0].features)
    plans = []
    style = (StyleReference(random_image(70, 90, 31)),)
    for fine in ({4, 5}, {4, 5, 6}):  # the default feature step follows the last fine step: 5, then 6
        run(models, cond, Stages(fine_steps=frozenset(fine)), styles=style, regions=Regions(count=2),
            on_regions=plans.append)
    assert [p.plan.styles[0].labels.shape for p in plans] == [(12, 12), (16, 16)]


def test_region_features_are_the_feature_steps_own_values_in_the_chosen_blocks(models, cond, monkeypatch):
    """A token's feature: the mean over the chosen blocks of its self-attention values (unit length
    per block), read at the feature step from the attention calls themselves."""
    model = models[0]
    step, layers = 4, (1, 2)
    log = AttentionLog(monkeypatch)
    _, features = sample_content_ahead(model, cond, SCHEDULE, 7, SETTINGS, until=step, step=step, layers=layers)
    counts = SCHEDULE.token_counts
    start, tokens = sum(counts[:step]), counts[step]  # the cache holds steps 0..step, oldest first
    calls = log.self_attention(tokens)
    assert len(calls) == model.config.depth
    expected = 0
    for (q, k, v), _ in calls[layers[0]:layers[1] + 1]:
        assert v.shape[2] == start + tokens
        own = v[0, :, start:start + tokens]                        # [H, L, hd]: the conditional row, this step
        expected = expected + F.normalize(own.transpose(0, 1).flatten(1), dim=-1)
    expected = expected / (layers[1] - layers[0] + 1)
    torch.testing.assert_close(features, expected.view(*SCHEDULE.scales[step], -1), rtol=0, atol=1e-6)


def test_the_regions_are_found_on_the_last_fine_steps_grid_by_default(models, cond):
    plans = []
    run(models, cond, styles=STYLES[:2], regions=Regions(count=2), on_regions=plans.append)
    plan = plans[0].plan
    # fine steps 4-6: step 6, the 16x16 grid (step 4 is 8x8)
    assert plan.content.labels.shape == (16, 16)
    assert [s.labels.shape for s in plan.styles] == [(16, 16), (16, 16)]


def test_a_feature_step_before_the_last_fine_step_still_runs_the_content_path_through_it(models, cond):
    """Feature step 3, fine steps 4-6: the content path runs ahead through step 6 (the stylized run
    replays its bits up to there), drawing exactly what the content prompt's own run draws."""
    model, vae = models
    regions = Regions(count=2, feature_step=3)
    plan = plan_regions(model, vae, cond, [(STYLES[0], None)], Stages(fine_steps=FINE), SCHEDULE, 7, SETTINGS, None,
                        regions)
    free = generate(model, cond.content, SCHEDULE, [7], SETTINGS).drawn_bits
    assert len(plan.content_bits) == 7
    for si, bits in enumerate(plan.content_bits):
        assert torch.equal(bits.flatten(), free[si].long().flatten()), f"step {si}"
    assert plan.content.labels.shape == (6, 6)  # step 3's grid
    plans = []
    out = run(models, cond, styles=STYLES[:1], regions=regions, on_regions=plans.append)
    assert torch.isfinite(out).all() and plans[0].plan.content.labels.shape == (6, 6)


def test_bad_region_settings_say_what_to_do(models, cond):
    with pytest.raises(InfinityError, match="auto or 1-8"):
        run(models, cond, regions=Regions(count=9))
    with pytest.raises(InfinityError, match="strength must be from 0 to 10"):
        run(models, cond, regions=Regions(strength=-1))
    with pytest.raises(InfinityError, match="style 2 has none"):
        run(models, cond, styles=(STYLES[0], StyleReference(None)), regions=Regions())


def test_the_region_map_shows_the_picture_the_content_regions_were_found_in(models, cond):
    # No content image: the content path as it stood at the regions step (the last fine step), the
    # very picture a plain run of the content prompt previews at that step.
    model, vae = models
    found = []
    run(models, cond, regions=Regions(count=2), on_regions=found.append)
    step = max(FINE)
    previews = {}
    generate(model, cond.content, SCHEDULE, [7], SETTINGS, negative=cond.negative,
             callback=lambda e: previews.setdefault(e.step, e.summed_codes))
    expected = preview_image(vae, previews[step], SCHEDULE.scales[step])
    assert torch.equal(found[0].content_picture(), expected)
    # A content image: that image.
    content = random_image(64, 64, 30)
    found.clear()
    run(models, cond, regions=Regions(count=2), content_image=content, on_regions=found.append)
    assert found[0].content_picture() is content


def test_feature_initialization_leaves_a_masked_cell_to_its_mask_where_a_match_covers_it(models, cond, monkeypatch):
    """Every content region matched to style 1 (so its match covers every cell) and style 2 masked
    to the left half: in the 2x2 grid of step 1 the left cells take style 2's bits, the right ones
    style 1's."""
    def everything_to_the_first(content_features, content, style_features, styles, weights, position_weight):
        return [Match(r, 0, 0, 1.0) for r in range(content.count)]
    monkeypatch.setattr(regions_module, "match_regions", everything_to_the_first)
    mask = torch.zeros(SCHEDULE.image_hw)
    mask[:, :SCHEDULE.image_hw[1] // 2] = 1
    styles = (STYLES[0], StyleReference(STYLES[2].image, mask=mask))
    seen = {}
    run(models, cond, Stages(key_sharing=False, query_sharing=False, fine_steps=FINE), styles=styles,
        regions=Regions(count=2), callback=lambda e: seen.setdefault(e.step, e.summed_codes.clone()))
    matched, masked = (BITS_CACHE.bits(models[1], ref.image, SCHEDULE)[1].view(2, 2, -1).long() for ref in styles)
    assert not torch.equal(matched[:, 0], masked[:, 0]), "the two styles must differ for the check to bite"
    bits = _step1_bits(seen)
    assert torch.equal(bits[:, 0], masked[:, 0]) and torch.equal(bits[:, 1], matched[:, 1])
