"""The unofficial GGUF release (infinity_2b_reg_Q8_0.gguf, flan-t5-xl-encoder-Q8_0.gguf,
infinity_vae_d32_reg.pth) as people download it: found by its names by the Loader and the command
line (generate, stylize, evaluate), and the T5 encoder GGUF working alone, from its own metadata.
The files are the tiny model set written in that layout (`published_layout`)."""
import json
import shutil

import numpy as np
import pytest
import sentencepiece as spm
import torch
from PIL import Image
from safetensors.torch import save_file

from infinity_core.cli import main
from infinity_core.tiny import TINY_TRANSFORMER
from infinity_core.tiny_t5 import tiny_t5_config
from infinity_core.evaluate.tiny_clip import write_tiny_clip
from infinity_core.weights.t5_files import load_text_encoder
from infinity_core.weights.t5_tokenizer import sentencepiece_t5_tokenizer
from published_layout import (PADDED_VOCAB, PUBLISHED, decoded_weights, llama_cpp_name, normalized_sentencepiece,
                              precompiled_charsmap, q8_0_round_trip, write_published_models,
                              write_t5_gguf_like_llama_cpp)

PROMPTS = ["a cat in the snow, watercolor", "  Ｗａｔｅｒｃｏｌｏｒ   ﬁsh  ", "café ① dog", "x"]


@pytest.fixture(scope="module")
def t5_alone(tmp_path_factory):
    """The T5 encoder GGUF alone in its folder (no config.json, no tokenizer files), loaded; its
    SentencePiece model (with a normalizer table) and its weights before quantization."""
    folder = tmp_path_factory.mktemp("t5_alone")
    path = folder / PUBLISHED["t5"][1]
    _, spm_model, state = write_t5_gguf_like_llama_cpp(str(path), d_model=128)
    return path, load_text_encoder(str(path)), spm_model, state


def test_a_t5_gguf_alone_tokenizes_as_its_sentencepiece_model(t5_alone):
    path, encoder, spm_model, _ = t5_alone
    sentencepiece = spm.SentencePieceProcessor(model_proto=spm_model)
    for prompt in PROMPTS:  # full-width letters and the fi ligature go through the normalizer table
        assert encoder.tokenizer(prompt).input_ids == sentencepiece.encode(prompt) + [sentencepiece.eos_id()]
    assert len(encoder.tokenizer) == sentencepiece.get_piece_size()  # the [PADn] rows are not pieces


def test_a_t5_gguf_alone_encodes_as_the_t5_its_metadata_describes(t5_alone):
    """The reference: transformers' own T5 encoder at the sizes the file was written with, holding
    the weights as Q8_0 stores them (quantized and decoded by the gguf package), fed SentencePiece's ids."""
    from transformers import T5EncoderModel

    path, encoder, spm_model, state = t5_alone
    reference = T5EncoderModel(tiny_t5_config(PADDED_VOCAB, d_model=128)).eval()
    stored = {name: q8_0_round_trip(weights) for name, weights in state.items()}
    reference.load_state_dict({**stored, "encoder.embed_tokens.weight": stored["shared.weight"]})
    sentencepiece = spm.SentencePieceProcessor(model_proto=spm_model)
    got = encoder.encode(PROMPTS)
    assert got.lens == [len(sentencepiece.encode(p)) + 1 for p in PROMPTS]
    with torch.no_grad():
        for i, prompt in enumerate(PROMPTS):
            ids = torch.tensor([sentencepiece.encode(prompt) + [sentencepiece.eos_id()]])
            want = reference(input_ids=ids).last_hidden_state[0]
            torch.testing.assert_close(got.row(i), want, atol=1e-5, rtol=1e-5)


def test_a_t5_gguf_of_weights_only_alone_says_where_it_belongs(t5_alone, tmp_path):
    from infinity_core.errors import InfinityError
    from infinity_core.weights.gguf_file import write_gguf

    path = tmp_path / "weights-only.gguf"
    write_gguf(str(path), {llama_cpp_name(k): v for k, v in t5_alone[3].items()}, "Q8_0", arch="t5encoder")
    with pytest.raises(InfinityError) as info:
        load_text_encoder(str(path))
    assert "carries no T5 tokenizer" in str(info.value) and "beside that model's config.json" in str(info.value)


# --- the published set, found by its names ----------------------------------------------------------

@pytest.fixture(scope="module")
def published(tmp_path_factory):
    folder = tmp_path_factory.mktemp("published") / "models"
    write_published_models(str(folder))
    return folder


@pytest.fixture(scope="module")
def released_twin(published, tmp_path_factory):
    """The same numbers in the released layout: the transformer's and T5's Q8_0 weights decoded by
    the gguf package into a safetensors file and a flan-t5-xl folder (its tokenizer.json made from the
    same SentencePiece model), the VAE file under its released name."""
    folder = tmp_path_factory.mktemp("released") / "models"
    for sub in ("infinity", "vae", "text_encoders/flan-t5-xl"):
        (folder / sub).mkdir(parents=True)
    transformer = decoded_weights(str(published / "infinity" / PUBLISHED["transformer"][1]))
    save_file({k: v.contiguous() for k, v in transformer.items()}, str(folder / "infinity" / "infinity_2b_reg.safetensors"))
    shutil.copy(published / "vae" / PUBLISHED["vae"][1], folder / "vae" / "infinity_vae_d32reg.pth")
    t5 = folder / "text_encoders" / "flan-t5-xl"
    config = tiny_t5_config(PADDED_VOCAB, TINY_TRANSFORMER.text_channels)
    config.save_pretrained(str(t5))
    by_llama_name = decoded_weights(str(published / "text_encoders" / PUBLISHED["t5"][1]))
    from transformers import T5EncoderModel
    names = [n for n in T5EncoderModel(config).state_dict() if n != "encoder.embed_tokens.weight"]
    save_file({n: by_llama_name[llama_cpp_name(n)].contiguous() for n in names}, str(t5 / "model.safetensors"))
    spm_model = normalized_sentencepiece(str(t5))
    sentencepiece_t5_tokenizer(spm_model, precompiled_charsmap(spm_model)).save_pretrained(str(t5))
    return folder


def test_the_command_line_finds_the_published_files_and_draws_what_the_released_layout_draws(
        published, released_twin, tmp_path):
    args = ["--prompt", "a red house", "--pn", "0.06M", "--seed", "3"]
    assert main(["generate", "--models", str(published), *args, "--out", str(tmp_path / "published.png")]) == 0
    assert main(["generate", "--models", str(released_twin), *args, "--out", str(tmp_path / "released.png")]) == 0
    published_image = np.asarray(Image.open(tmp_path / "published.png"))
    assert published_image.shape == (256, 256, 3)
    assert np.array_equal(published_image, np.asarray(Image.open(tmp_path / "released.png")))


def test_stylize_finds_the_published_files(published, tmp_path):
    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "style.png")
    assert main(["stylize", "--models", str(published), "--content", "a cat", "--style", "ink", "--pn", "0.06M",
                 "--fine-steps", "4-6", "--style-image", str(tmp_path / "style.png"),
                 "--out", str(tmp_path / "cat.png")]) == 0
    assert Image.open(tmp_path / "cat.png").size == (256, 256)


def test_evaluate_finds_the_published_files(published, tmp_path):
    (tmp_path / "prompts.txt").write_text("a cat\n")
    Image.new("RGB", (40, 40), (30, 90, 200)).save(tmp_path / "s.png")
    (tmp_path / "styles.csv").write_text("image,style\ns.png,watercolor painting\n")
    clip = write_tiny_clip(str(tmp_path / "clip"))
    out = tmp_path / "run"
    assert main(["evaluate", "--models", str(published), "--clip", clip, "--prompts", str(tmp_path / "prompts.txt"),
                 "--styles", str(tmp_path / "styles.csv"), "--pn", "0.06M", "--config", "a:fine=4-6",
                 "--out", str(out)]) == 0
    models = json.loads((out / "run.json").read_text())["models"]
    assert {slot: models[slot] for slot in PUBLISHED} == {slot: name for slot, (_, name) in PUBLISHED.items()}


def test_the_loader_lists_the_published_files_and_runs_them(published):
    import comfy_stubs
    from test_nodes import REPO, Pack

    with comfy_stubs.installed(REPO, str(published)):
        pack = Pack("infinity_published_comfy")
    widgets = {w.name: w.options for w in pack.specs["InfinityStyleLoader"].widgets}
    files = {"transformer": PUBLISHED["transformer"][1], "vae": PUBLISHED["vae"][1],
             "text_encoder": PUBLISHED["t5"][1]}
    assert all(files[slot] in widgets[slot] for slot in files)
    model, vae, text_encoder = pack.run("InfinityStyleLoader", **files).args
    assert model.obj.blocks[0].ffn.fc1.weight.dtype == torch.int8  # Q8_0 blocks, decoded per call
    conditioning = pack.run("InfinityStyleTextEncode", {"text_encoder": text_encoder}).args[0]
    codes = pack.run("InfinityStyleSampler", {"model": model, "vae": vae, "conditioning": conditioning},
                     pixel_budget="0.06M").args[0]
    image = pack.run("InfinityStyleDecode", {"vae": vae, "codes": codes}).args[0]
    assert image.shape == (1, 256, 256, 3)
