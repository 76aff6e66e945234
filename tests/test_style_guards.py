"""Tests that fail on bugs the rest of the suite let through: each names the bug it guards against."""
import torch

from infinity_core.network import quantizer
from infinity_core.sampler import filter_logits, generate
from infinity_core.style import BITS_CACHE, StyleConditioning, StyleReference, Stages, generation_prompt
from infinity_core.style.control import StyleAttention
from infinity_core.style.engine import _StyleRun
from test_style import OFF, SCHEDULE, SETTINGS, STYLE, AttentionLog, cond, models, run  # noqa: F401  (fixtures)
from tiny import random_image, random_text

KEY_ONLY = Stages(feature_init=False, query_sharing=False)


def test_a_key_step_leaves_the_generation_rows_own_keys_and_values_in_place(models, cond, monkeypatch):
    """The shared keys / values are built beside the generation row's, never written into its k / v
    (which are its KV cache, read by every later scale)."""
    original, seen = StyleAttention.__call__, {}

    def checked(self, q, k, v, call):
        before = q.clone(), k.clone(), v.clone()
        out = original(self, q, k, v, call)
        assert all(torch.equal(a, b) for a, b in zip(before, (q, k, v))), f"step {call.step} edited q/k/v in place"
        seen.setdefault((call.step, call.layer), before)
        return out
    monkeypatch.setattr(StyleAttention, "__call__", checked)
    run(models, cond, KEY_ONLY)
    gen = 2  # rows [content, style, generation] at steps 2-3
    for layer in range(4):
        _, k2, v2 = seen[(2, layer)]
        _, k3, v3 = seen[(3, layer)]  # the cache at step 3 starts with everything up to step 2
        assert torch.equal(k3[gen][:, :k2.shape[2]], k2[gen]) and torch.equal(v3[gen][:, :v2.shape[2]], v2[gen])


def test_fine_strength_0_is_query_sharing_off_and_a_quarter_takes_a_quarter_of_the_shared_query(models, cond,
                                                                                                  monkeypatch):
    """Strength s: Q_gen := (1 - s) Q_gen + s (a Q_gen + (1 - a) Q_con), a the per-token, per-head cosine."""
    off = run(models, cond, Stages(query_sharing=False))
    assert torch.equal(run(models, cond, Stages(fine_strength=0.0)), off)
    log = AttentionLog(monkeypatch)
    run(models, cond, Stages(feature_init=False, key_sharing=False, fine_strength=0.25))
    for step in (4, 5, 6, 7):
        layers = log.self_attention(SCHEDULE.token_counts[step])
        assert layers
        for (q, k, v), edits in layers:
            for offset, (q_used, _, _, _) in zip((0, 2), edits):  # rows [con, gen | uncond con, uncond gen]
                q_con, q_gen = q[offset], q[offset + 1]
                norms = q_gen.norm(dim=-1, keepdim=True) * q_con.norm(dim=-1, keepdim=True)
                a = (q_gen * q_con).sum(-1, keepdim=True) / norms
                shared = a * q_gen + (1 - a) * q_con
                torch.testing.assert_close(q_used, 0.75 * q_gen + 0.25 * shared, rtol=1e-5, atol=1e-6)


def test_feature_initialization_stops_before_the_first_key_step(models, cond):
    model, vae = models
    assert Stages(key_steps=frozenset({3, 4}), fine_steps=frozenset({5})).init_steps == {0, 1, 2}
    style_bits = BITS_CACHE.bits(vae, STYLE.image, SCHEDULE)
    final = (1, *vae.patchify.latent_grid(SCHEDULE.final_grid))
    seen = {}
    run(models, cond, Stages(key_sharing=False, query_sharing=False),
        callback=lambda e: seen.setdefault(e.step, e.summed_codes.clone()))
    style_step = [quantizer.resize(quantizer.bits_to_codes(vae.patchify.unpack_bits(b)), final) for b in style_bits]
    torch.testing.assert_close(seen[1], style_step[0] + style_step[1])  # steps 0 and 1: the style's
    assert not torch.allclose(seen[2] - seen[1], style_step[2])  # step 2, the first key step: its own


def test_the_content_row_replays_the_content_image(models, cond, monkeypatch):
    model, vae = models
    content = random_image(100, 150, 13)
    original, replayed = _StyleRun.choose_bits, []

    def recording(self, si, logits):
        bits = original(self, si, logits)
        if self.rows[0].path == "content":
            replayed.append((si, bits[0].clone()))
        return bits
    monkeypatch.setattr(_StyleRun, "choose_bits", recording)
    with_content = run(models, cond, content_image=content)
    want = BITS_CACHE.bits(vae, content, SCHEDULE)
    assert len(replayed) == 8  # steps 0-7: the content row is read up to the last fine step
    assert all(torch.equal(bits.to(want[si].dtype), want[si].view(bits.shape)) for si, bits in replayed)
    assert not torch.equal(with_content, run(models, cond))


def test_the_negative_prompt_reaches_plain_and_stylized_runs(models, cond, monkeypatch):
    """A negative prompt is every row's unconditional text: a run with it is the run whose learned
    null text is that prompt, plain and stylized alike."""
    model = models[0]
    negative = random_text(4, 21)
    negated = generate(model, cond.generation, SCHEDULE, [7], SETTINGS, negative=negative).summed_codes
    stylized = run(models, StyleConditioning(cond.content, cond.style, cond.generation, negative, {}))
    assert not torch.equal(negated, generate(model, cond.generation, SCHEDULE, [7], SETTINGS).summed_codes)
    monkeypatch.setattr(model, "null_text", lambda lens: negative.select([0] * len(lens)))
    assert torch.equal(generate(model, cond.generation, SCHEDULE, [7], SETTINGS).summed_codes, negated)
    assert torch.equal(run(models, cond), stylized)


def test_the_generation_prompt_puts_content_then_style():
    assert generation_prompt("a cat", "ink wash") == "a cat in ink wash"
    assert generation_prompt(" a cat ", "ink wash", "{style} picture of {content}") == "ink wash picture of a cat"


def test_top_p_drops_an_outcome_exactly_at_the_boundary():
    """Two equally likely outcomes, top_p 0.5: the less likely (by sort order) sits exactly at
    1 - top_p and goes, as in the reference (cumulative probability <= 1 - top_p)."""
    kept = filter_logits(torch.zeros(3, 2), top_k=0, top_p=0.5)
    assert torch.isinf(kept).sum(dim=-1).tolist() == [1, 1, 1]
    assert not torch.isinf(filter_logits(torch.zeros(3, 2), top_k=0, top_p=0.51)).any()


def test_the_only_style_at_weight_0_or_under_an_empty_mask_is_a_text_only_style(models, cond):
    text_only = run(models, cond, styles=(StyleReference(None),))
    assert torch.equal(run(models, cond, styles=(StyleReference(STYLE.image, weight=0.0),)), text_only)
    assert torch.equal(run(models, cond, styles=(StyleReference(STYLE.image, mask=torch.zeros(8, 8)),)), text_only)


def test_a_template_with_an_unknown_field_is_refused_and_one_without_style_warned(caplog):
    import pytest
    from infinity_core.errors import InfinityError
    with pytest.raises(InfinityError, match=r"has \{subject\}; it knows only \{content\} and \{style\}"):
        generation_prompt("a cat", "ink", "{subject} in {style}")
    with pytest.raises(InfinityError, match=r"must contain \{content\}"):
        generation_prompt("a cat", "ink", "a picture in {style}")
    with caplog.at_level("WARNING"):
        assert generation_prompt("a cat", "ink", "{content}, painted") == "a cat, painted"
    assert any("has no {style}" in r.getMessage() for r in caplog.records)
