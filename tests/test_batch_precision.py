"""The batch promise: image i of a batch is the image a single run with seed + i makes, in every
precision, for plain and stylized runs alike (each image runs as its own pass)."""
import pytest
import torch

from infinity_core import schedules
from infinity_core.network.text import TextBatch
from infinity_core.sampler import SamplingSettings, generate
from infinity_core.style import StyleConditioning, StyleReference, Stages, stylize
from infinity_core.tiny import TINY_TRANSFORMER
from infinity_core.network.transformer import place_weights, build_random_transformer
from tiny import random_image, random_text, tiny_models

SCHEDULE = schedules.schedule(1.0, "0.06M")
SETTINGS = SamplingSettings(cfg=3.0, tau=1.0)
STAGES = Stages(fine_steps=frozenset({4, 5}))  # 0.06M has 7 scales


@pytest.fixture(scope="module", params=[torch.bfloat16, torch.float16, torch.float32], ids=str)
def model(request):
    return place_weights(build_random_transformer(TINY_TRANSFORMER, 0), "cpu", request.param)


def test_plain_image_i_of_a_batch_is_the_single_run_with_seed_plus_i(model):
    text = random_text(5, 1)
    batch = generate(model, text.select([0, 0, 0]), SCHEDULE, [4, 5, 6], SETTINGS, negative=random_text(3, 2))
    for i, seed in enumerate([4, 5, 6]):
        single = generate(model, text, SCHEDULE, [seed], SETTINGS, negative=random_text(3, 2))
        assert torch.equal(batch.summed_codes[i], single.summed_codes[0])
        assert all(torch.equal(b[i], s[0]) for b, s in zip(batch.drawn_bits, single.drawn_bits))


def test_with_one_negative_prompt_per_image_image_i_uses_negative_i(model):
    text, negatives = random_text(5, 1), [random_text(3, 2), random_text(4, 3)]
    batch = generate(model, text.select([0, 0]), SCHEDULE, [4, 5], SETTINGS, negative=TextBatch.cat(negatives))
    for i, (seed, negative) in enumerate(zip([4, 5], negatives)):
        assert torch.equal(batch.summed_codes[i], generate(model, text, SCHEDULE, [seed], SETTINGS,
                                                           negative=negative).summed_codes[0])
    other = generate(model, text, SCHEDULE, [5], SETTINGS, negative=negatives[0]).summed_codes[0]
    assert not torch.equal(batch.summed_codes[1], other), "the negatives must differ in effect for the check to bite"


def test_stylized_image_i_of_a_batch_is_the_single_run_with_seed_plus_i(model):
    vae = tiny_models()[1]
    cond = StyleConditioning(random_text(3, 1), random_text(4, 2), random_text(6, 3), None, {})
    style = [StyleReference(random_image(40, 30, 1))]
    batch = stylize(model, vae, cond, style, STAGES, SCHEDULE, [8, 9], SETTINGS)
    single = stylize(model, vae, cond, style, STAGES, SCHEDULE, [9], SETTINGS)
    assert torch.equal(batch[1], single[0]) and not torch.equal(batch[0], batch[1])
