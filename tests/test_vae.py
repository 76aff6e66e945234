"""The BSQ VAE's loader, layouts and quantiser edge rules (parity with the reference is in
test_golden.py)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from golden_cases import case_names, load_case
from infinity_core.errors import CheckpointError, InfinityError
from infinity_core.network import quantizer
from infinity_core.network.vae import (BSQVAE, PRESETS, VAEConfig, build_random_vae, config_from_state_dict,
                                       group_norm_channels_last)
from infinity_core.weights.vae_file import load_vae, vae_state_dict_for_file

CASES = case_names()
TINY = VAEConfig(32, (1, 1, 1, 1, 1), 2, 32)


def max_abs(a, b):
    return (a - b).abs().max().item()


def save_vae_file(sd: dict, path: Path, wrap=True) -> str:
    if path.suffix == ".safetensors":
        save_file(sd, str(path))
    else:
        torch.save({"vae": sd} if wrap else sd, path)
    return str(path)


# --- quantiser edge rules -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.float16, torch.bool])
def test_bits_to_codes_values_and_layout(dtype):
    bits = torch.randint(0, 2, (2, 3, 4, 32), generator=torch.Generator().manual_seed(0))
    codes = quantizer.bits_to_codes(bits.to(dtype))  # [B, h, w, 32] is accepted too
    assert codes.shape == (2, 32, 1, 3, 4) and codes.dtype == torch.float32
    want = ((2 * bits.float() - 1) / 32 ** 0.5).permute(0, 3, 1, 2).unsqueeze(2)
    assert max_abs(codes, want) <= 1e-7
    assert max_abs(codes.norm(dim=1), torch.ones(2, 1, 3, 4)) <= 1e-6
    # Channels-last like the reference: trilinear resizing rounds differently on a contiguous copy.
    assert codes.is_contiguous(memory_format=torch.channels_last_3d)


def test_sign_rule_zero_is_minus_one():
    latent = torch.zeros(1, 32, 2, 2)
    latent[:, :16] = 1.0  # first 16 channels positive, the rest exactly zero
    bits = quantizer.encode_bits(latent, [(2, 2)])[0]
    assert bits[..., :16].all() and not bits[..., 16:].any()


def test_encode_bits_needs_the_latent_size_last():
    with pytest.raises(InfinityError, match="last scale"):
        quantizer.encode_bits(torch.randn(1, 32, 4, 4), [(1, 1), (2, 2)])


# --- loader: good files ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    vae = build_random_vae(TINY, seed=1)
    image = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(2)) * 2 - 1
    return vae, image


def outputs(vae, image):
    latent = vae.encode_latent(image)
    return latent, vae.decode(latent)


def test_random_vae_is_deterministic_by_seed(tiny):
    vae, _ = tiny
    same, other = build_random_vae(TINY, seed=1), build_random_vae(TINY, seed=2)
    sd, sd_same, sd_other = vae.state_dict(), same.state_dict(), other.state_dict()
    assert all(torch.equal(sd[k], sd_same[k]) for k in sd)
    assert not torch.equal(sd["decoder.conv_out.conv.weight"], sd_other["decoder.conv_out.conv.weight"])


def test_file_layout_round_trip_picks_the_vae_entry(tiny, tmp_path):
    vae, image = tiny
    sd = vae_state_dict_for_file(vae)
    assert torch.equal(sd["quantize.lfq.mask"], 2 ** torch.arange(31, -1, -1))
    assert torch.equal(sd["quantizer.lfq.mask"], sd["quantize.lfq.mask"])
    decoy = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in sd.items()}
    torch.save({"vae": sd, "ema": decoy, "step": 7}, tmp_path / "vae.pth")
    loaded = load_vae(str(tmp_path / "vae.pth"))
    for got, want in zip(outputs(loaded, image), outputs(vae, image)):
        assert torch.equal(got, want)


def test_plain_name_spelling_loads_to_identical_outputs(tiny, tmp_path):
    vae, image = tiny
    plain = {k.replace(".conv.weight", ".weight").replace(".conv.bias", ".bias")
              .replace(".norm.weight", ".weight").replace(".norm.bias", ".bias"): v
             for k, v in vae.state_dict().items()}
    assert "encoder.down.0.downsample.conv.weight" in plain and "decoder.norm_out.weight" in plain
    path = save_vae_file(plain, tmp_path / "plain.safetensors")
    for got, want in zip(outputs(load_vae(path), image), outputs(vae, image)):
        assert torch.equal(got, want)


def test_masks_are_optional(tiny, tmp_path):
    vae, image = tiny
    path = save_vae_file(dict(vae.state_dict()), tmp_path / "nomask.pth", wrap=False)
    assert torch.equal(outputs(load_vae(path), image)[1], outputs(vae, image)[1])


def test_dtype_device_and_no_meta_left(tiny, tmp_path):
    vae, image = tiny
    path = save_vae_file(vae_state_dict_for_file(vae), tmp_path / "vae.safetensors")
    half = load_vae(path, device="cpu", dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 and p.device.type == "cpu" for p in half.parameters())
    assert not any(p.requires_grad for p in half.parameters())
    latent, decoded = outputs(half, image)
    assert latent.dtype == decoded.dtype == torch.float32
    full_latent, full_decoded = outputs(vae, image)
    # the bf16 weights compute the same latent and picture, to bf16's precision (a wrong cast or
    # an unloaded layer is far off; random decoder weights amplify rounding, hence the mean)
    assert max_abs(latent, full_latent) < 0.05 * full_latent.abs().max()
    assert (decoded - full_decoded).abs().mean() < 0.25 * full_decoded.std()


def test_every_layer_comes_from_the_operations_namespace(tiny, tmp_path):
    vae, _ = tiny
    made = []

    def recording(base):
        class Op(base):
            def __init__(self, *args, **kwargs):
                made.append(base.__name__)
                super().__init__(*args, **kwargs)
        return Op

    ops = SimpleNamespace(**{n: recording(getattr(nn, n))
                             for n in ("Conv2d", "GroupNorm", "Linear", "LayerNorm", "Embedding")})
    path = save_vae_file(vae_state_dict_for_file(vae), tmp_path / "vae.pth")
    loaded = load_vae(path, operations=ops)
    layers = [m for m in loaded.modules() if isinstance(m, (nn.Conv2d, nn.GroupNorm))]
    assert len(made) == len(layers) and all(type(m).__name__ == "Op" for m in layers)


def test_preset_is_the_released_architecture():
    meta = BSQVAE(PRESETS["infinity_vae_d32reg"], device="meta")
    sd = meta.state_dict()
    # infinity_vae_d32reg as the reference builds it (flux_vqgan AutoEncoder, base 128, ch_mult
    # 1,2,4,4,4, 2 res blocks, z 32): 270 tensors of which 2 are the optional mask buffers, and
    # 110,118,051 parameters, counted by running the reference's constructor on CPU
    assert len(sd) == 268 and sum(v.numel() for v in sd.values()) == 110_118_051
    assert sd["encoder.down.1.block.0.nin_shortcut.conv.weight"].shape == (256, 128, 1, 1)
    assert sd["decoder.up.0.block.0.nin_shortcut.conv.weight"].shape == (128, 256, 1, 1)
    assert config_from_state_dict(sd) == PRESETS["infinity_vae_d32reg"]


def test_only_the_released_codebooks_and_strides():
    with pytest.raises(InfinityError, match="32 and 14 bits"):
        BSQVAE(VAEConfig(32, (1, 1, 1, 1, 1), 2, 16), device="meta")
    with pytest.raises(InfinityError, match="4 levels cannot downsample 16x"):
        BSQVAE(VAEConfig(32, (1, 1, 1, 1), 2, 14, patch_size=16), device="meta")
    assert BSQVAE(VAEConfig(32, (1, 1, 1, 1), 2, 14, patch_size=8), device="meta").patchify.factor == 2


def test_patchify_preset_is_the_released_architecture():
    """infinity_vae_d56_f8_14_patchify: 14 bits, ch_mult [1, 2, 4, 4], three downsamplings (8x)."""
    sd = BSQVAE(PRESETS["infinity_vae_d56_f8_14_patchify"], device="meta").state_dict()
    assert sd["encoder.conv_out.conv.weight"].shape == (14, 512, 3, 3)
    assert "encoder.down.2.downsample.conv.conv.weight" in sd and "encoder.down.3.downsample.conv.conv.weight" not in sd
    assert "decoder.up.3.upsample.conv.conv.weight" in sd and "decoder.up.0.upsample.conv.conv.weight" not in sd
    assert config_from_state_dict(sd) == PRESETS["infinity_vae_d56_f8_14_patchify"]


# --- loader: wrong files --------------------------------------------------------------------------

def assert_refused(path, *fragments):
    with pytest.raises(CheckpointError) as info:
        load_vae(path)
    message = str(info.value)
    assert path in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_transformer_file_given_as_vae(tmp_path):
    transformer = load_case(CASES[0]).part("transformer")
    path = save_vae_file(transformer, tmp_path / "infinity_2b_reg.safetensors")
    assert_refused(path, "not an Infinity BSQ VAE", "missing: encoder.conv_in.conv.weight",
                   "unexpected: " + next(iter(transformer)))


def test_sd_like_vae_is_refused_by_keys(tmp_path):
    # An SD-style VAE: plain names, 8 latent channels, attention in the middle, quant convs.
    sd = {k: v for k, v in vae_state_dict_for_file(build_random_vae(TINY, seed=3)).items()
          if "lfq" not in k}
    sd["encoder.conv_out.conv.weight"] = torch.zeros(8, 32, 3, 3)
    sd["encoder.conv_out.conv.bias"] = torch.zeros(8)
    sd["encoder.mid.attn_1.q.weight"] = torch.zeros(32, 32, 1, 1)
    sd["quant_conv.weight"] = torch.zeros(8, 8, 1, 1)
    path = save_vae_file(sd, tmp_path / "sd_vae.safetensors")
    assert_refused(path, "wrong shape: encoder.conv_out.conv.weight (8, 32, 3, 3)",
                   "encoder.mid.attn_1.q.weight", "quant_conv.weight", "8 channels")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file(tiny, tmp_path, suffix):
    vae, _ = tiny
    path = save_vae_file(vae_state_dict_for_file(vae), tmp_path / f"vae{suffix}")
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    assert_refused(path, "truncated")


def test_missing_tensor_is_named(tiny, tmp_path):
    vae, _ = tiny
    sd = vae_state_dict_for_file(vae)
    del sd["decoder.up.2.block.1.norm2.norm.bias"]
    path = save_vae_file(sd, tmp_path / "vae.pth")
    assert_refused(path, "missing: decoder.up.2.block.1.norm2.norm.bias")


@pytest.mark.parametrize("mask", [torch.zeros(32, dtype=torch.int64),
                                  2 ** torch.arange(32, dtype=torch.int64),
                                  (2 ** torch.arange(31, -1, -1)).to(torch.int32)])
def test_wrong_mask_buffer_refused(tiny, tmp_path, mask):
    vae, _ = tiny
    sd = vae_state_dict_for_file(vae)
    sd["quantizer.lfq.mask"] = mask
    path = save_vae_file(sd, tmp_path / "vae.safetensors")
    assert_refused(path, "quantizer.lfq.mask")


def test_extra_tensors_in_a_vae_file_load_with_one_warning(tiny, tmp_path, caplog):
    vae, image = tiny
    sd = dict(vae_state_dict_for_file(vae), **{"loss.discriminator.weight": torch.zeros(4)})
    with caplog.at_level("WARNING"):
        loaded = load_vae(save_vae_file(sd, tmp_path / "extra.pth"))
    assert [r.getMessage().count("loss.discriminator.weight") for r in caplog.records] == [1]
    assert torch.equal(outputs(loaded, image)[1], outputs(vae, image)[1])


@pytest.mark.parametrize("shape", ["centred", "offset", "halves", "far"])
def test_group_norm_on_channels_last_is_as_precise_as_the_contiguous_kernel(shape):
    """The VAE runs channels-last on CPU; torch's CPU GroupNorm for that layout accumulates in one
    long fp32 pass (up to 2e-4 off with one thread on a mean-5 input). Ours shifts by the first
    rows' mean: the halves (+10 above, -10 below) make that shift far from the mean; far (a mean 30
    times the spread) is where unshifted fp32 moments lose the variance. The answer is computed in
    float64 from the definition; slices of 4096 values make several slices."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 96, 80, generator=gen) * 3
    if shape == "offset":
        x += 5
    elif shape == "halves":
        x[:, :, :48] += 10
        x[:, :, 48:] -= 10
    elif shape == "far":
        x = x / 3 + 30
    norm = torch.nn.GroupNorm(32, 64, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=gen)
        norm.bias.uniform_(-0.5, 0.5, generator=gen)
        groups = x.double().view(1, 32, -1)
        mean, var = groups.mean(-1, keepdim=True), groups.var(-1, unbiased=False, keepdim=True)
        want = ((groups - mean) / (var + 1e-6).sqrt()).view_as(x) * norm.weight.double()[:, None, None] \
            + norm.bias.double()[:, None, None]
        got = group_norm_channels_last(x.contiguous(memory_format=torch.channels_last), norm, chunk_values=4096)
        contiguous = norm(x)  # torch's kernel on the contiguous layout, the goldens' decode
    assert got.is_contiguous(memory_format=torch.channels_last)
    # both apply scale and shift in fp32, which bounds them alike where the mean is far
    assert (got.double() - want).abs().max() <= max(3e-6, 2 * (contiguous.double() - want).abs().max())


def test_the_vae_runs_in_the_layout_measured_for_the_device(tiny):
    """Decode and encode follow layouts.MEASURED (CPU fp32: channels-last) and stay within the
    golden tolerances of the contiguous run (decode 1e-4 on [-1, 1] pixels, encode 1e-5 relative)."""
    vae, image = tiny
    seen = []
    hook = vae.decoder.conv_in.conv.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    hook_enc = vae.encoder.conv_in.conv.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        latent = vae.encode_latent(image)
        decoded = vae.decode(latent)
        contiguous_latent = vae.encoder(image.contiguous())
        contiguous = vae.decoder(latent.contiguous()).clamp(-1, 1)
    hook.remove()
    hook_enc.remove()
    channels_last = [x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() for x in seen[:2]]
    assert channels_last == [True, True]
    assert (decoded - contiguous).abs().max() <= 1e-4
    assert max_abs(latent, contiguous_latent) <= 1e-5 * contiguous_latent.abs().max()



def test_a_device_with_no_measured_layout_times_both_once(tiny, monkeypatch):
    """On a device kind not in layouts.MEASURED (a GPU) the VAE times a pass in each layout on its
    first decode and keeps the faster for the process."""
    from infinity_core.network import layouts

    vae, _ = tiny
    timed = []

    def seconds(vae, device, part, layout, **_):
        timed.append((part, layout))
        return 1.0 if layout == layouts.CONTIGUOUS else 2.0  # contiguous "faster" here
    monkeypatch.setattr(layouts, "MEASURED", {})
    monkeypatch.setattr(layouts, "_chosen", {})
    monkeypatch.setattr(layouts, "pass_seconds", seconds)
    assert layouts.layout_for(vae, "cpu", "decode") == layouts.CONTIGUOUS
    assert layouts.layout_for(vae, "cpu", "decode") == layouts.CONTIGUOUS
    assert timed == [("decode", layouts.CONTIGUOUS), ("decode", layouts.CHANNELS_LAST)]
    assert layouts.layout_for(vae, "cpu", "encode") == layouts.CONTIGUOUS and len(timed) == 4  # its own choice
