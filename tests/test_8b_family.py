"""Infinity-8B's architecture and its spatial patchify, checked against their definitions."""
import pytest
import torch

from infinity_core.network.config import PRESETS, TransformerConfig, config_from_state_dict, preset_name
from infinity_core.errors import InfinityError
from infinity_core.network.patchify import Patchify
from infinity_core.network.transformer import InfinityTransformer


def test_the_8b_preset_has_the_released_shapes():
    """Counts from the reference's 8B configuration (tools/run_infinity.py: depth 40, width 3584,
    28 heads, mlp_ratio 4, 8 block chunks; d_vae 4 x 14): 8,375,791,824 parameters in 862 tensors,
    of which the 81 zero_k_bias buffers are not kept."""
    cfg = PRESETS["infinity_8b"]
    state = InfinityTransformer(cfg).state_dict()  # meta device: shapes only
    assert len(state) == 862 - 81 and sum(v.numel() for v in state.values()) == 8_375_791_824
    assert state["block_chunks.7.module.4.ffn.fc1.weight"].shape == (14336, 3584)
    assert state["block_chunks.0.module.0.sa.scale_mul_1H11"].shape == (1, 28, 1, 1)
    assert state["text_proj_for_sos.ca.mat_q"].shape == (1, 16, 224)  # 16 pool heads of 3584 / 16
    assert state["word_embed.weight"].shape == (3584, 56) and state["head.weight"].shape == (112, 3584)
    assert config_from_state_dict(state) == cfg and preset_name(cfg) == "infinity_8b"
    assert cfg.patchify == Patchify(2) and cfg.vae_codebook_dim == 14


def test_tokens_of_other_widths_are_refused():
    with pytest.raises(InfinityError, match="tokens of 48 bits fit no released VAE"):
        TransformerConfig(depth=2, embed_dim=64, num_heads=2, text_channels=128, block_chunks=2, codebook_dim=48)


def test_token_bit_4c_2i_j_is_latent_channel_c_at_2y_i_2x_j():
    patch = Patchify(2)
    h, w, d = 3, 2, 14
    latent = torch.randint(0, 2, (2, 1, 2 * h, 2 * w, d), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    tokens = patch.pack_bits(latent)
    assert tokens.shape == (2, 1, h, w, 4 * d)
    for c in range(d):
        for i in range(2):
            for j in range(2):
                assert torch.equal(tokens[:, :, :, :, 4 * c + 2 * i + j], latent[:, :, i::2, j::2, c])
    assert torch.equal(patch.unpack_bits(tokens), latent)
    assert patch.latent_scales([(1, 1), (4, 3)]) == [(2, 2), (8, 6)]


def test_next_scale_input_packs_the_resized_latent_codes_into_tokens():
    patch = Patchify(2)
    summed = torch.randn(1, 14, 1, 8, 8)
    tokens = patch.token_inputs(summed, (2, 2))  # latent 4x4 under a 2x2 token grid
    small = torch.nn.functional.interpolate(summed, size=(1, 4, 4), mode="trilinear")[:, :, 0]
    assert tokens.shape == (1, 4, 56)
    y, x, c, i, j = 1, 0, 5, 1, 1
    assert tokens[0, y * 2 + x, 4 * c + 2 * i + j] == small[0, c, 2 * y + i, 2 * x + j]
    assert torch.equal(Patchify(1).token_inputs(summed, (8, 8)), summed.flatten(2).transpose(1, 2))
