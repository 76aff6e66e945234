"""The nodes with the 8B family: the Loader lists a sharded transformer folder and both VAEs, a
stylized graph runs on the tiny 8B-family set, and mismatched pairs get a clear message."""
from __future__ import annotations

import pytest
import torch

import run_workflow as rw
from test_nodes import QUICK, QUICK_STAGES, Pack, style_picture


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    pack = Pack("infinitystyle_8b")
    pack.models = tmp_path_factory.mktemp("models")
    tiny = pack.mod("infinity_core.tiny")
    pack.files_2b = rw.build_tiny_models(pack.models, pack.name)
    tiny.write_tiny_8b_models(str(pack.models))
    pack.files = {kind: name for kind, (_, name) in tiny.TINY_8B_FILES.items()}
    pack.mod("nodes.comfy_bridge").use_models_dir(str(pack.models))
    return pack


def test_loader_lists_both_families_and_a_sharded_folder_as_one_entry(pack):
    transformer, vae = rw.spec_of(pack.nodes["InfinityStyleLoader"]).widgets[:2]
    assert {pack.files["transformer"], pack.files_2b["transformer"]} <= set(transformer.options)
    assert not any("/" in name for name in transformer.options), "shards are not models of their own"
    assert {pack.files["vae"], pack.files_2b["vae"]} <= set(vae.options)


def test_a_stylized_graph_runs_on_the_8b_family(pack):
    model, vae, text_encoder = pack.run("InfinityStyleLoader", **pack.files).args
    assert model.obj.config.codebook_dim == 56 and vae.obj.patchify.factor == 2
    cond = pack.run("InfinityStyleConditioner", {"text_encoder": text_encoder}).args[0]
    stages = pack.run("InfinityStyleStageScheduler", **QUICK_STAGES).args[0]
    styles = pack.run("InfinityStyleStyleImageEncoder", {"image": style_picture()}).args[0]
    codes = pack.run("InfinityStyleSampler", {"model": model, "vae": vae, "conditioning": cond, "styles": styles,
                                              "stages": stages}, **QUICK, tau=1.0).args[0]
    assert codes.summed.shape == (1, 14, 1, 32, 32)  # 16x16 tokens = 32x32 latent positions
    # what the engine makes of the same inputs (the widgets' defaults but tau, seed 0)
    settings = pack.mod("infinity_core.sampler").SamplingSettings(cfg=3.0, tau=1.0, top_k=900, top_p=0.97)
    expected = pack.mod("infinity_core.style").stylize(model.obj, vae.obj, cond, styles, stages, codes.schedule, [0],
                                                       settings)
    assert torch.equal(codes.summed, expected)
    image = pack.run("InfinityStyleDecode", {"vae": vae, "codes": codes}).args[0]
    assert image.shape == (1, 256, 256, 3)
    assert torch.equal(image, pack.mod("infinity_core.images").decode_images(vae.obj, expected))

    _, vae_2b, _ = pack.run("InfinityStyleLoader", **pack.files_2b).args
    message = pack.error("InfinityStyleDecode", {"vae": vae_2b, "codes": codes})
    assert "14 channels" in message and "decodes 32" in message
    message = pack.error("InfinityStyleSampler", {"model": model, "vae": vae_2b, "conditioning": cond}, **QUICK)
    assert "does not go with" in message and "infinity_vae_d56_f8_14_patchify" in message


def test_a_2b_vae_with_the_8b_transformer_is_refused_at_load(pack):
    message = pack.error("InfinityStyleLoader", **{**pack.files, "vae": pack.files_2b["vae"]})
    assert "tokens carry 56 bits, this VAE's 32" in message
