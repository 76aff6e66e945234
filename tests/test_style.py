"""The style engine: each mechanism checked on the tensors attention actually used."""
import pytest
import torch
import torch.nn.functional as F

from infinity_core import schedules
from infinity_core.errors import InfinityError
from infinity_core.network import quantizer
from infinity_core.sampler import SamplingSettings, generate
from infinity_core.style import BITS_CACHE, Stages, StyleConditioning, StyleReference, parse_steps, stylize
from tiny import random_image, random_text, tiny_models

SCHEDULE = schedules.schedule(1.0, "0.25M")  # 10 scales: 1, 2, 4, 6, 8, 12, 16, 20, 24, 32
SETTINGS = SamplingSettings(cfg=3.0, tau=0.5)
OFF = Stages(feature_init=False, key_sharing=False, query_sharing=False)


@pytest.fixture(scope="module", params=["2b", "8b"])
def models(request):
    """Every test runs on both families: the stage numbers and mechanisms carry over to 8B."""
    return tiny_models(family=request.param)


def final_codes_shape(models, images=1):
    """Summed codes live on the VAE's latent grid: 32x32 tokens are 32x32 (2B) or 64x64 (8B) positions."""
    vae = models[1]
    return (images, vae.config.z_channels, 1, *vae.patchify.latent_grid(SCHEDULE.final_grid))


@pytest.fixture(scope="module")
def cond():
    return StyleConditioning(random_text(3, 1), random_text(4, 2), random_text(6, 3), None, {})


STYLE = StyleReference(random_image(300, 200, 10))


def run(models, cond, stages=Stages(), styles=(STYLE,), seeds=(7,), **kw):
    model, vae = models
    return stylize(model, vae, cond, list(styles), stages, SCHEDULE, list(seeds), SETTINGS, **kw)


class AttentionLog:
    """Every scaled-dot-product attention call, with its inputs, in order."""

    def __init__(self, monkeypatch):
        self.calls = []
        original = F.scaled_dot_product_attention

        def recording(q, k, v, attn_mask=None, scale=None, **kw):
            # copies: a later in-place edit of these tensors must not change what was recorded
            self.calls.append((q.clone(), k.clone(), v.clone(), attn_mask, scale))
            return original(q, k, v, attn_mask=attn_mask, scale=scale, **kw)
        monkeypatch.setattr(F, "scaled_dot_product_attention", recording)

    def self_attention(self, tokens):
        """(batched call, [per-row calls after it]) of each layer at the step with `tokens` queries."""
        layers = []
        for q, k, v, mask, scale in self.calls:
            if q.shape[-2] != tokens or scale != 1.0:
                continue  # another step, or cross-attention / text pooling
            if q.shape[0] > 1:  # the whole batch (CFG keeps it at two rows or more)
                layers.append(((q, k, v), []))
            else:  # one generation row, recomputed by a mechanism
                layers[-1][1].append((q[0], k[0], v[0], mask))
        return layers


def test_all_switches_off_samples_what_a_plain_run_samples(models, cond):
    plain = generate(models[0], cond.generation, SCHEDULE, [7], SETTINGS).summed_codes
    assert torch.equal(run(models, cond, OFF), plain)


def test_key_stage_attention_sharing_uses_content_query_and_shared_keys_values(models, cond, monkeypatch):
    log = AttentionLog(monkeypatch)
    run(models, cond, Stages(feature_init=False, query_sharing=False))
    for step in (2, 3):
        layers = log.self_attention(SCHEDULE.token_counts[step])
        assert len(layers) == 4
        for (q, k, v), edits in layers:
            assert q.shape[0] == 6 and len(edits) == 2  # [con, sty, gen | uncond]; both halves edited
            for offset, (q_used, k_used, v_used, _) in zip((0, 3), edits):
                con, sty, gen = offset, offset + 1, offset + 2
                assert torch.equal(q_used, q[con])
                assert torch.equal(k_used, torch.cat([k[con], k[sty]], dim=1))
                assert torch.equal(v_used, torch.cat([v[gen], v[sty]], dim=1))
    for step in (0, 1, 4, 9):  # outside the key stage (and AQS off): untouched
        assert all(not edits for _, edits in log.self_attention(SCHEDULE.token_counts[step]))


def test_adaptive_query_sharing_blends_by_per_token_per_head_cosine(models, cond, monkeypatch):
    log = AttentionLog(monkeypatch)
    run(models, cond, Stages(feature_init=False, key_sharing=False))
    for step in (4, 5, 6, 7):
        for (q, k, v), edits in log.self_attention(SCHEDULE.token_counts[step]):
            assert q.shape[0] == 4 and len(edits) == 2  # style rows have left: [con, gen | uncond]
            for offset, (q_used, k_used, v_used, _) in zip((0, 2), edits):
                q_con, q_gen = q[offset], q[offset + 1]
                a = (q_gen * q_con).sum(-1, keepdim=True) / (q_gen.norm(dim=-1, keepdim=True) * q_con.norm(dim=-1, keepdim=True))
                torch.testing.assert_close(q_used, a * q_gen + (1 - a) * q_con, rtol=1e-5, atol=1e-6)
                assert torch.equal(k_used, k[offset + 1]) and torch.equal(v_used, v[offset + 1])
    for step in (2, 3, 8, 9):
        assert all(not edits for _, edits in log.self_attention(SCHEDULE.token_counts[step]))


def test_feature_initialization_gives_the_generation_path_the_style_features(models, cond):
    model, vae = models
    style_bits = BITS_CACHE.bits(vae, STYLE.image, SCHEDULE)  # token layout
    final = (1, *vae.patchify.latent_grid(SCHEDULE.final_grid))
    expected = sum(quantizer.resize(quantizer.bits_to_codes(vae.patchify.unpack_bits(b)), final) for b in style_bits[:2])
    seen = {}
    run(models, cond, Stages(key_sharing=False, query_sharing=False),
        callback=lambda e: seen.setdefault(e.step, e.summed_codes.clone()))
    torch.testing.assert_close(seen[1], expected)
    seen_off = {}
    run(models, cond, OFF, callback=lambda e: seen_off.setdefault(e.step, e.summed_codes.clone()))
    assert not torch.allclose(seen_off[1], expected)


def test_layer_range_and_unconditional_switch(models, cond, monkeypatch):
    log = AttentionLog(monkeypatch)
    run(models, cond, Stages(feature_init=False, query_sharing=False, layers=(1, 2), uncond=False))
    edits = [len(e) for _, e in log.self_attention(SCHEDULE.token_counts[2])]
    assert edits == [0, 1, 1, 0]


def test_rows_leave_the_batch_once_nothing_reads_them(models, cond, monkeypatch):
    log = AttentionLog(monkeypatch)
    run(models, cond)
    rows = [log.self_attention(n)[0][0][0].shape[0] for n in SCHEDULE.token_counts]
    assert rows == [6, 6, 6, 6, 4, 4, 4, 4, 2, 2]


def test_model_is_plain_again_after_a_failed_run(models, cond):
    model = models[0]

    def fail(event):
        if event.step == 3:
            raise KeyboardInterrupt("injected")
    with pytest.raises(KeyboardInterrupt):
        run(models, cond, callback=fail)
    assert model.attention_control is None
    before = generate(model, cond.generation, SCHEDULE, [3], SETTINGS).summed_codes
    assert torch.equal(run(models, cond, OFF, seeds=(3,)), before)


@pytest.mark.parametrize("init,key,query", [(0, 0, 0), (1, 0, 0), (1, 1, 0), (1, 1, 1), (0, 1, 1), (0, 0, 1), (1, 0, 1), (0, 1, 0)])
def test_every_switch_combination_runs(models, cond, init, key, query):
    out = run(models, cond, Stages(feature_init=bool(init), key_sharing=bool(key), query_sharing=bool(query)))
    assert out.shape == final_codes_shape(models) and torch.isfinite(out).all()
    plain = run(models, cond, OFF)
    assert torch.equal(out, plain) == (not (init or key or query))


def test_weight_zero_or_empty_mask_is_the_same_as_leaving_the_style_out(models, cond):
    alone = run(models, cond)
    other = random_image(64, 64, 11)
    assert torch.equal(run(models, cond, styles=(STYLE, StyleReference(other, weight=0.0))), alone)
    assert torch.equal(run(models, cond, styles=(STYLE, StyleReference(other, mask=torch.zeros(40, 40)))), alone)
    assert torch.equal(run(models, cond, styles=(StyleReference(STYLE.image, mask=torch.ones(9, 13)),)), alone)
    assert not torch.equal(run(models, cond, styles=(STYLE, StyleReference(other))), alone)


def test_weights_and_masks_shape_each_styles_share_of_attention(models, cond, monkeypatch):
    log = AttentionLog(monkeypatch)
    mask = torch.zeros(SCHEDULE.image_hw)
    mask[:, :SCHEDULE.image_hw[1] // 2] = 1  # left half of the output only
    second = StyleReference(random_image(80, 80, 12), weight=2.0, mask=mask)
    run(models, cond, Stages(feature_init=False, query_sharing=False), styles=(STYLE, second))
    (q, k, v), edits = log.self_attention(16)[0]  # step 2: a 4x4 grid
    bias = edits[0][3]
    len_con = k.shape[2]
    first_cols, second_cols = bias[:, len_con:2 * len_con], bias[:, 2 * len_con:]
    assert (bias[:, :len_con] == 0).all() and (first_cols == 0).all()
    left = torch.arange(16) % 4 < 2
    torch.testing.assert_close(second_cols[left], torch.full_like(second_cols[left], torch.log(torch.tensor(2.0)).item()))
    assert torch.isneginf(second_cols[~left]).all()


def test_content_image_and_text_only_style_run_end_to_end(models, cond):
    restyled = run(models, cond, content_image=random_image(100, 150, 13, channels=4))
    text_only = run(models, cond, styles=(StyleReference(None),), seeds=(1, 2))
    assert restyled.shape == final_codes_shape(models) and text_only.shape == final_codes_shape(models, 2)
    assert not torch.equal(text_only[0], text_only[1])


def test_a_style_is_encoded_once_across_prompts_and_seeds(models, cond):
    image = random_image(90, 90, 14)
    before = BITS_CACHE.encodes
    run(models, cond, styles=(StyleReference(image),), seeds=(1, 2))
    other = StyleConditioning(random_text(5, 4), cond.style, random_text(7, 5), None, {})
    run(models, other, styles=(StyleReference(image.clone()),))
    assert BITS_CACHE.encodes == before + 1


def test_stage_errors_name_the_valid_range_and_grid_sizes(models, cond):
    with pytest.raises(InfinityError, match=r"Fine step 12 is out of range.*steps 0-9.*9: 32x32"):
        run(models, cond, Stages(fine_steps=frozenset({4, 12})))
    with pytest.raises(InfinityError, match="both a key step and a fine step"):
        run(models, cond, Stages(key_steps=frozenset({2, 4})))
    with pytest.raises(InfinityError, match="key stage is empty"):
        run(models, cond, Stages(key_steps=frozenset()))
    with pytest.raises(InfinityError, match="Layer range 2-9"):
        run(models, cond, Stages(layers=(2, 9)))


def test_step_text_parsing():
    assert parse_steps("2,3") == {2, 3} and parse_steps(" 4-7 ") == {4, 5, 6, 7} and parse_steps("") == set()
    assert parse_steps("1, 4-5,9") == {1, 4, 5, 9}
    for bad in ("two", "3-", "1;2", "-1"):
        with pytest.raises(InfinityError, match="Could not read the step list"):
            parse_steps(bad)
    with pytest.raises(InfinityError, match="runs backwards"):
        parse_steps("7-4")


def test_feature_initialization_with_several_styles_takes_the_largest_share_per_position():
    from infinity_core.style.mechanisms import feature_initialization
    own, first, second = (torch.full((2, 3, 32), v) for v in (0, 1, 2))
    left = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    right = torch.tensor([[0.5, 2.0, 0.0], [0.5, 2.0, 0.0]])  # weight 2, covers the middle column
    out = feature_initialization(own, [first, second], [left, right])
    assert out[:, 0].eq(1).all() and out[:, 1].eq(2).all() and out[:, 2].eq(0).all()
    assert torch.equal(feature_initialization(own, [first]), first)
