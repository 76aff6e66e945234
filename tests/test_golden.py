"""Parity with the reference implementation on every golden case (see tests/golden/FORMAT.md and
tests/golden_8b/FORMAT_PATCHIFY.md), 2B and 8B (spatial patchify) families alike.

Each stage is judged from the golden input of that stage, so one fp32 near-tie upstream cannot
cascade. The tiny models are written to real checkpoint files and loaded through the real loaders.
"""
import pytest
import torch

from golden_cases import case_names, load_case, relative_error
from infinity_core import schedules
from infinity_core.network import quantizer
from infinity_core.network.config import config_from_state_dict
from infinity_core.network.patchify import Patchify
from infinity_core.sampler import SamplingSettings, generate
from infinity_core.network.text import TextBatch
from infinity_core.weights.transformer_file import load_transformer
from infinity_core.network.vae import VAEConfig
from infinity_core.weights.vae_file import load_vae


@pytest.fixture(scope="module", params=case_names())
def case(request):
    return load_case(request.param)


@pytest.fixture(scope="module")
def models(case, tmp_path_factory):
    folder = tmp_path_factory.mktemp(case.name)
    from safetensors.torch import save_file
    transformer_file = folder / "transformer.safetensors"
    save_file(case.part("transformer"), str(transformer_file))
    vae_file = folder / "vae.pth"
    weights = {k: v for k, v in case.part("vae").items() if k.startswith(("encoder.", "decoder.", "quantize"))}
    torch.save({"vae": weights}, vae_file)
    return load_transformer(str(transformer_file)), load_vae(str(vae_file))


@pytest.fixture(scope="module")
def schedule(case):
    sch = schedules.schedule(case.meta["h_div_w"], case.meta["pn"])
    assert [[1, h, w] for h, w in sch.scales] == case.meta["schedule"]
    assert list(sch.image_hw) == case.meta["image_hw"]
    return sch


@pytest.fixture(scope="module")
def patchify(case, models, schedule):
    """How tokens sit on the latent grid, as both loaded models read it from their weights."""
    assert models[0].config.patchify == models[1].patchify == Patchify(case.patch_factor)
    assert models[1].patchify.latent_scales(schedule.scales) == case.latent_scales
    return models[1].patchify


def test_architecture_read_from_shapes(case, models):
    expected = case.meta["transformer"]
    cfg = models[0].config
    assert (cfg.depth, cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.text_channels, cfg.block_chunks) == (
        expected["depth"], expected["embed_dim"], expected["num_heads"], expected["mlp_ratio"],
        expected["text_channels"], expected["block_chunks"])
    assert config_from_state_dict(case.part("transformer")) == cfg
    assert (cfg.codebook_dim, cfg.vae_codebook_dim) == (case.meta["codebook_dim"], case.meta["vae"]["codebook_dim"])
    vae = case.meta["vae"]
    assert models[1].config == VAEConfig(vae["base_ch"], tuple(vae["ch_mult"]), vae["num_res_blocks"], vae["z_channels"],
                                         vae["patch_size"])
    assert models[1].token_bits == cfg.codebook_dim


def test_vae_encoder(case, models):
    latent = models[1].encode_latent(case.f32("vae.input"))
    assert relative_error(latent, case.f32("vae.latent")) <= 1e-5


def test_multiscale_quantizer_bits(case, patchify):
    bits = quantizer.encode_bits(case.f32("vae.latent"), case.latent_scales)
    for si, (golden, golden_tokens) in enumerate(zip(case.per_scale("vae.bits"), case.vae_token_bits())):
        assert torch.equal(bits[si].to(torch.uint8), golden), f"scale {si}"
        assert torch.equal(patchify.pack_bits(golden), golden_tokens), f"scale {si}: token layout"
        assert torch.equal(patchify.unpack_bits(golden_tokens), golden), f"scale {si}: latent layout"


def test_summed_codes_and_decoder(case, models, patchify):
    summed = quantizer.summed_codes(case.per_scale("vae.bits"), case.latent_scales)
    assert relative_error(summed, case.f32("vae.summed_codes")) <= 1e-5
    decoded = models[1].decode(case.f32("vae.summed_codes"))
    assert (decoded - case.f32("vae.decoded")).abs().max().item() <= 1e-4


def test_teacher_forcing_inputs_from_token_bits(case, schedule, patchify):
    """Each scale's input is the codes summed so far on the latent grid, resized under the next token
    grid and packed into tokens: what the sampler feeds back, and what the reference trained on."""
    final, summed, inputs = (1, *case.latent_scales[-1]), 0, []
    for si, bits in enumerate(case.vae_token_bits()[:-1]):
        summed = summed + quantizer.resize(quantizer.bits_to_codes(patchify.unpack_bits(bits)), final)
        inputs.append(patchify.token_inputs(summed, schedule.scales[si + 1]))
    assert relative_error(torch.cat(inputs, dim=1), case.f32("forward.x_wo_prefix")) <= 1e-5


def test_teacher_forced_logits(case, models, schedule):
    text = TextBatch(case.f32("text.features"), case.meta["text_lens"])
    logits = models[0].teacher_forced_logits(text, case.f32("forward.x_wo_prefix"), schedule)
    assert relative_error(logits, case.f32("forward.logits")) <= 1e-5


def _sampling(case):
    s = case.meta["sampling"]
    assert s["cfg_insertion_layer"] == 0 and s["negative_prompt"] is None
    return s["seed"], SamplingSettings(cfg=s["cfg"], tau=s["tau"], top_k=s["top_k"], top_p=s["top_p"])


def test_sampled_bits_match_reference_draws(case, models, schedule):
    seed, settings = _sampling(case)
    text = TextBatch(case.f32("text.features"), case.meta["text_lens"])
    golden = case.per_scale("sample.bits")
    result = generate(models[0], text, schedule, [seed], settings, replay=golden)
    for si, (drawn, want, tie) in enumerate(zip(result.drawn_bits, golden, case.per_scale("sample.neartie"))):
        decided = tie == 0
        assert torch.equal(drawn[decided], want[decided]), f"scale {si}: {(drawn != want)[decided].sum()} bits differ"


def test_sample_image_from_golden_bits(case, models, schedule, patchify):
    if patchify.factor > 1:
        for si, bits in enumerate(case.per_scale("sample.bits")):
            assert torch.equal(patchify.unpack_bits(bits), case.per_scale("sample.vae_bits")[si]), f"scale {si}"
    summed = patchify.summed_codes(case.per_scale("sample.bits"), schedule.scales)
    image = (models[1].decode(summed) + 1) / 2
    assert (image.permute(0, 2, 3, 1) - case.f32("sample.image")).abs().max().item() <= 1e-4


def test_free_running_sample_parts_from_the_reference_only_at_near_ties(case, models, schedule):
    """A free run may part from the reference only where a near-tie lands the other way: up to the
    first differing scale it saw the same inputs, so there every differing bit must be a near-tie."""
    seed, settings = _sampling(case)
    text = TextBatch(case.f32("text.features"), case.meta["text_lens"])
    result = generate(models[0], text, schedule, [seed], settings)
    golden = case.per_scale("sample.bits")
    first_diff = next((si for si, (a, b) in enumerate(zip(result.drawn_bits, golden)) if not torch.equal(a, b)), None)
    if first_diff is not None:
        differs = result.drawn_bits[first_diff] != golden[first_diff]
        assert bool(case.per_scale("sample.neartie")[first_diff][differs].all()), f"first differs at scale {first_diff}"
