"""Transformer loading: strict keys, presets, safe unpickling, clear errors on wrong files."""
import pickle

import pytest
import torch
from safetensors.torch import save_file

from golden_cases import case_names, load_case
from infinity_core.checkpoint import read_state_dict
from infinity_core.config import PRESETS, TransformerConfig, config_from_state_dict, preset_name
from infinity_core.errors import CheckpointError, InfinityError
from infinity_core.transformer import InfinityTransformer, build_random_transformer, load_transformer
from tiny import TINY_TRANSFORMER


@pytest.fixture(scope="module")
def tiny_state():
    return build_random_transformer(TINY_TRANSFORMER, 1).state_dict()


def refused(path, *fragments):
    with pytest.raises(CheckpointError) as info:
        load_transformer(str(path))
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_round_trip_through_both_formats(tiny_state, tmp_path, suffix):
    path = tmp_path / f"t{suffix}"
    save_file(tiny_state, str(path)) if suffix == ".safetensors" else torch.save(tiny_state, path)
    model = load_transformer(str(path))
    assert model.config == TINY_TRANSFORMER
    for key, value in model.state_dict().items():
        assert torch.equal(value, tiny_state[key]), key
    assert not any(p.is_meta for p in model.parameters())


def test_released_zero_buffers_are_accepted_and_checked(tiny_state, tmp_path):
    with_buffers = dict(tiny_state, **{"block_chunks.0.module.0.sa.zero_k_bias": torch.zeros(64)})
    torch.save(with_buffers, tmp_path / "ok.pth")
    load_transformer(str(tmp_path / "ok.pth"))
    torch.save(dict(tiny_state, **{"block_chunks.0.module.0.sa.zero_k_bias": torch.ones(64)}), tmp_path / "bad.pth")
    refused(tmp_path / "bad.pth", "zero_k_bias", "all zeros")


def test_bf16_keeps_text_and_head_in_fp32(tiny_state, tmp_path):
    torch.save(tiny_state, tmp_path / "t.pth")
    model = load_transformer(str(tmp_path / "t.pth"), dtype=torch.bfloat16)
    assert model.blocks[0].sa.mat_qkv.weight.dtype == torch.bfloat16
    assert model.head.weight.dtype == model.cfg_uncond.dtype == torch.float32


def test_the_2b_preset_matches_the_released_layout():
    cfg = PRESETS["infinity_2b"]
    model = InfinityTransformer(cfg)  # on the meta device: shapes only
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(shapes) == 22 + 21 * 32 - 1 - 2 * 32  # the zero_k_bias buffers are not kept
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 2_204_564_032
    assert shapes["block_chunks.7.module.3.sa.mat_qkv.weight"] == (6144, 2048)
    assert shapes["text_proj_for_sos.ca.mat_q"] == (1, 16, 128)
    assert shapes["cfg_uncond"] == (512, 2048)
    assert config_from_state_dict(model.state_dict()) == cfg and preset_name(cfg) == "infinity_2b"
    assert preset_name(TINY_TRANSFORMER) is None


def test_vae_given_as_transformer(tmp_path):
    golden = load_case(case_names()[0])
    torch.save({"vae": golden.part("vae")}, tmp_path / "vae.pth")
    refused(tmp_path / "vae.pth", "not an Infinity transformer", "missing: pos_start")


def test_stable_diffusion_checkpoint(tmp_path):
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3),
               "first_stage_model.decoder.conv_in.weight": torch.zeros(4, 4, 3, 3)}, str(tmp_path / "sd15.safetensors"))
    refused(tmp_path / "sd15.safetensors", "missing: pos_start", "model.diffusion_model.input_blocks.0.0.weight")


def test_a_block_missing_or_reshaped_names_the_keys(tiny_state, tmp_path):
    damaged = dict(tiny_state)
    del damaged["block_chunks.1.module.1.ffn.fc2.bias"]
    damaged["head.weight"] = torch.zeros(10, 64)
    torch.save(damaged, tmp_path / "damaged.pth")
    refused(tmp_path / "damaged.pth", "missing: block_chunks.1.module.1.ffn.fc2.bias", "head.weight (10, 64) (expected (64, 64))")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file(tiny_state, tmp_path, suffix):
    path = tmp_path / f"full{suffix}"
    save_file(tiny_state, str(path)) if suffix == ".safetensors" else torch.save(tiny_state, path)
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    refused(cut, "truncated")


class RunsCode:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /tmp/infinitystyle_pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"pos_start": torch.zeros(1), "payload": RunsCode()}, path)
    message = refused(path, "refused to load", "could run code")
    assert "safetensors" in message
    import os
    assert not os.path.exists("/tmp/infinitystyle_pwned")
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump(RunsCode(), f)
    with pytest.raises(CheckpointError, match="refused to load"):
        read_state_dict(str(tmp_path / "plain.pkl"))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_transformer(str(tmp_path / "nothing.pth"))


def test_an_impossible_architecture_is_refused_by_name(tiny_state, tmp_path):
    odd = {k: v for k, v in tiny_state.items() if not k.startswith("block_chunks.1.module.1.")}  # 3 blocks, 2 chunks
    torch.save(odd, tmp_path / "odd.pth")
    refused(tmp_path / "odd.pth", "3 blocks do not split into 2 chunks")
    with pytest.raises(InfinityError, match="text width 64"):
        TransformerConfig(depth=2, embed_dim=64, num_heads=2, text_channels=64, block_chunks=2)


def test_raw_parameters_follow_the_input_device_and_dtype(tiny_state, tmp_path):
    """A partly loaded model (raw parameters left elsewhere) still computes: they move at use."""
    torch.save(tiny_state, tmp_path / "t.pth")
    model = load_transformer(str(tmp_path / "t.pth"), dtype=torch.bfloat16)
    block = model.blocks[0]
    block.sa.q_bias.data = block.sa.q_bias.data.float()  # as if left behind in another dtype
    x = torch.randn(1, 4, 64, dtype=torch.bfloat16)
    from infinity_core.transformer import _bias
    assert _bias(x, block.sa.q_bias, None, block.sa.v_bias).dtype == torch.bfloat16
