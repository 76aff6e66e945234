"""Transformer loading: strict keys, presets, safe unpickling, clear errors on wrong files."""
import pickle

import pytest
import torch
from safetensors.torch import save_file

from golden_cases import case_names, load_case
from infinity_core.weights.checkpoint import read_state_dict
from infinity_core.network.config import PRESETS, TransformerConfig, config_from_state_dict, preset_name
from infinity_core.errors import CheckpointError, InfinityError
from infinity_core.network.transformer import InfinityTransformer, build_random_transformer
from infinity_core.weights.transformer_file import load_transformer
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
    # The reference's 2B configuration (depth 32, width 2048, 16 heads, mlp_ratio 4, 8 block
    # chunks, flan-t5-xl's 2048 text channels, text_maxlen 512; tools/run_infinity.py at commit
    # 4c27bbb) builds 22 top-level + 21 per-block tensors and 2,204,564,032 parameters, counted
    # by running that constructor on CPU (design/infinity_facts.md 1.2). The zero_k_bias buffers
    # (one in the text pool, two per block) are not kept.
    assert len(shapes) == 22 + 21 * 32 - 1 - 2 * 32
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
    """Unpickling this writes `marker`: the file exists afterwards only if the code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return (os.system, (f"echo pwned > '{self.marker}'",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "check.pkl", "wb") as f:
        pickle.dump(RunsCode(marker), f)
    with open(tmp_path / "check.pkl", "rb") as f:
        pickle.load(f)  # an unguarded load runs it: the marker can show a breach
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "evil.pth"
    torch.save({"pos_start": torch.zeros(1), "payload": RunsCode(marker)}, path)
    message = refused(path, "refused to load", "could run code")
    assert "safetensors" in message
    assert not marker.exists()
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump(RunsCode(marker), f)
    with pytest.raises(CheckpointError, match="refused to load"):
        read_state_dict(str(tmp_path / "plain.pkl"))
    assert not marker.exists()


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
    from infinity_core.network.transformer import _bias
    assert _bias(x, block.sa.q_bias, None, block.sa.v_bias).dtype == torch.bfloat16


def _shapes_of(cfg):
    return InfinityTransformer(cfg).state_dict()  # on the meta device: shapes only


# widths and ratios, less those whose feed-forward width rounds to 0 (no such model)
SHAPES = [(width, heads, ratio) for width, heads in [(64, 2), (96, 2), (128, 4), (320, 5), (2048, 16)]
          for ratio in [1.0, 2.0, 2.5, 3.0, 4.0, 8 / 3, 6.0] if round(width * ratio / 256)]


@pytest.mark.parametrize("width,heads,ratio", SHAPES)
def test_the_architecture_read_back_is_canonical(width, heads, ratio):
    cfg = TransformerConfig(depth=2, embed_dim=width, num_heads=heads, mlp_ratio=ratio, text_channels=128,
                            block_chunks=1)
    read = config_from_state_dict(_shapes_of(cfg))
    assert read.ffn_dim == cfg.ffn_dim
    assert config_from_state_dict(_shapes_of(read)) == read  # a fixed point
    if cfg.ffn_dim == TransformerConfig(2, width, heads, text_channels=128, block_chunks=1).ffn_dim:
        assert read.mlp_ratio == 4.0  # the default whenever it gives the same feed-forward width
    else:
        assert read.mlp_ratio * width == cfg.ffn_dim


def test_a_width_96_model_with_ratio_4_reads_back_as_ratio_4():
    cfg = TransformerConfig(depth=2, embed_dim=96, num_heads=2, text_channels=128, block_chunks=1)
    assert cfg.ffn_dim == 512 and config_from_state_dict(_shapes_of(cfg)) == cfg


@pytest.mark.parametrize("edit,fragment", [
    (lambda s: s.update({"pos_start": torch.zeros(64)}), "pos_start has shape (64,)"),
    (lambda s: s.update({"pos_start": torch.tensor(1.0)}), "pos_start has shape ()"),
    (lambda s: s.update({"block_chunks.0.module.0.sa.scale_mul_1H11": torch.zeros(1, 0, 1, 1)}), "scale_mul_1H11"),
    (lambda s: s.update({"block_chunks.0.module.0.ffn.fc1.weight": torch.zeros(256)}), "fc1.weight has shape"),
    (lambda s: s.update({"text_norm.weight": torch.zeros(2, 2)}), "text_norm.weight has shape"),
    (lambda s: s.update({"block_chunks.x.module.0.ffn.fc2.bias": torch.zeros(64)}), "block_chunks.x.module.0"),
    (lambda s: s.update({"block_chunks.0.module.0": torch.zeros(64)}), "not a block key"),
])
def test_right_names_with_impossible_shapes_are_refused_clearly(tiny_state, tmp_path, edit, fragment):
    crafted = dict(tiny_state)
    edit(crafted)
    save_file(crafted, str(tmp_path / "crafted.safetensors"))
    refused(tmp_path / "crafted.safetensors", "not a complete", fragment)


def test_extra_tensors_load_with_one_warning_naming_them(tiny_state, tmp_path, caplog):
    extra = dict(tiny_state, **{"ema.shadow": torch.zeros(3), "block_chunks.0.module.0.sa.extra_buf": torch.zeros(2)})
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with caplog.at_level("WARNING"):
        model = load_transformer(str(tmp_path / "extra.safetensors"))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "ema.shadow" in warnings[0] and "sa.extra_buf" in warnings[0]
    assert model.config == TINY_TRANSFORMER and torch.equal(model.head.weight, tiny_state["head.weight"])
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_transformer(_saved(tiny_state, tmp_path / "exact.safetensors"))
    assert not caplog.records  # an exact file loads silently
    damaged = dict(extra)
    del damaged["head.bias"]  # a missing key stays an error, and names the extras too
    refused(_saved(damaged, tmp_path / "damaged.safetensors"), "missing: head.bias", "unexpected: ", "ema.shadow")


def _saved(state, path):
    save_file(state, str(path))
    return str(path)


@pytest.mark.parametrize("named", ["t.pth", "t.safetensors", "t.bin", "t"])
@pytest.mark.parametrize("written", ["safetensors", "zip", "legacy"])
def test_the_format_comes_from_the_first_bytes_not_the_name(tiny_state, tmp_path, named, written):
    path = tmp_path / named
    if written == "safetensors":
        save_file(tiny_state, str(path))
    else:
        torch.save(tiny_state, path, _use_new_zipfile_serialization=written == "zip")
    assert load_transformer(str(path)).config == TINY_TRANSFORMER


def test_a_folder_an_empty_file_a_text_file_and_an_lfs_pointer_each_say_what_they_are(tmp_path):
    refused(tmp_path, "a folder with no shard index")  # a transformer may be a sharded folder (Infinity-8B)
    with pytest.raises(CheckpointError, match="this is a folder"):
        read_state_dict(str(tmp_path))  # other slots take one file
    (tmp_path / "empty.pth").write_bytes(b"")
    refused(tmp_path / "empty.pth", "the file is empty")
    (tmp_path / "notes.pth").write_text("hello, these are not weights")
    refused(tmp_path / "notes.pth", "not a weight file")
    (tmp_path / "lfs.pth").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 8821\n")
    refused(tmp_path / "lfs.pth", "Git LFS pointer")
