"""T5 text encoding (fact sheet §5, §2.1): packed features, lens with `</s>`, loading a local
flan-t5-xl folder offline, and the errors a user sees for a bad folder.

A tiny random T5 written by `infinity_core.tiny_t5` stands in for flan-t5-xl. Every test runs with
the network cut: sockets refuse to connect and the Hugging Face offline switches are set.
"""
import json
import os
import shutil
import socket

import pytest
import torch
from safetensors.torch import load_file

from infinity_core.errors import InfinityError
from infinity_core.network.text import MAX_TOKENS, T5TextEncoder, TextBatch
from infinity_core.tiny_t5 import write_tiny_t5
from infinity_core.weights.t5_files import load_text_encoder

PROMPTS = [
    "a cat",
    "a watercolor painting of a red fox in a snowy forest at night, soft light, detailed brush strokes",
    "Zebra 42!",
]
TOL = 1e-5


def _no_network(*args, **kwargs):
    raise AssertionError("the text encoder tried to reach the network")


@pytest.fixture(scope="module", autouse=True)
def offline():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "getaddrinfo", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return write_tiny_t5(str(tmp_path_factory.mktemp("flan-t5-tiny")))


@pytest.fixture(scope="module")
def encoder(tiny) -> T5TextEncoder:
    return load_text_encoder(tiny)


def alone(model, tokenizer, prompt: str) -> torch.Tensor:
    """T5EncoderModel run directly on one prompt, no padding: all its rows are real tokens."""
    tokens = tokenizer(prompt, max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return model(**tokens).last_hidden_state[0].float()


def copy_of(tiny: str, dest, drop=()) -> str:
    dest = str(dest)
    shutil.copytree(tiny, dest)
    for name in drop:
        os.remove(os.path.join(dest, name))
    return dest


def edit_config(folder: str, **changes) -> None:
    path = os.path.join(folder, "config.json")
    with open(path) as f:
        config = json.load(f)
    config.update(changes)
    with open(path, "w") as f:
        json.dump(config, f)


# --- packing ---------------------------------------------------------------------------------------

def test_batched_packing_equals_each_prompt_encoded_alone(encoder):
    text = encoder.encode(PROMPTS)
    assert text.features.dtype == torch.float32
    assert text.features.shape == (sum(text.lens), encoder.channels)
    for i, prompt in enumerate(PROMPTS):
        expected = alone(encoder.model, encoder.tokenizer, prompt)
        assert text.lens[i] == expected.shape[0]
        torch.testing.assert_close(text.row(i), expected, atol=TOL, rtol=0)


def test_the_packing_test_would_see_padding_leak_into_real_tokens(encoder):
    """Without the attention mask the short prompt's rows attend to its pads and move: so the test
    above, at its tolerance, does guard the masking."""
    tokens = encoder.tokenizer(PROMPTS, padding="longest", return_tensors="pt")
    with torch.no_grad():
        unmasked = encoder.model(input_ids=tokens["input_ids"]).last_hidden_state
    short = alone(encoder.model, encoder.tokenizer, PROMPTS[0])
    assert (unmasked[0, :short.shape[0]] - short).abs().max() > 100 * TOL


def test_lens_count_the_tokens_and_the_appended_eos(encoder):
    tok = encoder.tokenizer
    text = encoder.encode(PROMPTS)
    for prompt, n in zip(PROMPTS, text.lens):
        ids = tok(prompt).input_ids
        words = tok(prompt, add_special_tokens=False).input_ids
        assert ids == words + [1]  # `</s>` is id 1, appended; no BOS
        assert n == len(words) + 1
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1 and tok.bos_token_id is None


def test_a_long_prompt_is_cut_to_512_tokens_ending_with_eos(encoder):
    prompt = " ".join(["cat dog"] * 400)
    text = encoder.encode([prompt, "a cat"])
    assert text.lens[0] == MAX_TOKENS
    ids = encoder.tokenizer(prompt, max_length=MAX_TOKENS, truncation=True).input_ids
    assert len(ids) == MAX_TOKENS and ids[-1] == 1
    torch.testing.assert_close(text.row(1), alone(encoder.model, encoder.tokenizer, "a cat"), atol=TOL, rtol=0)


def test_features_stay_float32_when_the_encoder_runs_in_bfloat16(tiny):
    enc = load_text_encoder(tiny, dtype=torch.bfloat16)
    assert enc.dtype == torch.bfloat16 and enc.device == torch.device("cpu")
    assert enc.model.get_input_embeddings().weight.dtype == torch.bfloat16
    assert enc.encode(["a cat"]).features.dtype == torch.float32


def test_encoder_exposes_its_module_device_and_width(encoder):
    assert isinstance(encoder.model, torch.nn.Module)
    assert encoder.device == torch.device("cpu")
    assert encoder.dtype == torch.float32
    assert encoder.channels == encoder.model.config.d_model == 64
    assert not any(p.requires_grad for p in encoder.model.parameters())
    assert not encoder.model.training


@pytest.mark.parametrize("prompts, which", [([""], "the prompt is empty"),
                                             (["a cat", "   "], "prompt 2 of 2 is empty (only spaces)")])
def test_an_empty_prompt_is_refused(encoder, prompts, which):
    with pytest.raises(InfinityError, match="write a few words|Write a few words") as err:
        encoder.encode(prompts)
    assert which in str(err.value)


# --- TextBatch -------------------------------------------------------------------------------------

def test_textbatch_row_select_and_cat_keep_each_prompts_rows(encoder):
    text = encoder.encode(PROMPTS)
    assert len(text) == 3
    assert text.offsets == [0, text.lens[0], text.lens[0] + text.lens[1]]

    picked = text.select([2, 0, 2])
    assert picked.lens == [text.lens[2], text.lens[0], text.lens[2]]
    assert torch.equal(picked.features, torch.cat([text.row(2), text.row(0), text.row(2)]))
    assert torch.equal(picked.row(1), text.row(0))

    joined = TextBatch.cat([encoder.encode(PROMPTS[:2]), encoder.encode(PROMPTS[2:])])
    assert joined.lens == text.lens
    torch.testing.assert_close(joined.features, text.features, atol=TOL, rtol=0)


# --- the tiny stand-in -----------------------------------------------------------------------------

def test_tiny_t5_is_deterministic_and_its_tokenizer_fits_its_config(tiny, tmp_path):
    again = write_tiny_t5(str(tmp_path / "again"))
    for name in sorted(os.listdir(tiny)):
        with open(os.path.join(tiny, name), "rb") as a, open(os.path.join(again, name), "rb") as b:
            assert a.read() == b.read(), name
    other = write_tiny_t5(str(tmp_path / "other"), d_model=32, seed=1)
    enc = load_text_encoder(other)
    assert enc.channels == 32 and enc.encode(["a cat"]).features.shape[1] == 32
    assert len(enc.tokenizer) == enc.model.config.vocab_size
    assert enc.model.config.model_type == "t5" and enc.model.config.is_gated_act


# --- real flan-t5-xl layouts -----------------------------------------------------------------------

def test_a_sharded_full_t5_folder_loads_its_encoder_only(tiny, tmp_path):
    """flan-t5-xl ships T5ForConditionalGeneration weights in shards with an index: the decoder is
    skipped and the encoder reads the same numbers."""
    from transformers import T5ForConditionalGeneration

    full = T5ForConditionalGeneration.from_pretrained(tiny, local_files_only=True).eval()
    torch.manual_seed(3)
    with torch.no_grad():
        for p in full.parameters():
            p.add_(0.01 * torch.randn_like(p))  # any weights, so a skipped tensor would show
    folder = copy_of(tiny, tmp_path / "full", drop=("model.safetensors",))
    full.save_pretrained(folder, max_shard_size="100KB")
    assert os.path.isfile(os.path.join(folder, "model.safetensors.index.json"))

    enc = load_text_encoder(folder)
    text = enc.encode(PROMPTS)
    for i, prompt in enumerate(PROMPTS):
        torch.testing.assert_close(text.row(i), alone(full.get_encoder(), enc.tokenizer, prompt), atol=TOL, rtol=0)


def test_a_pytorch_model_bin_folder_loads(tiny, encoder, tmp_path):
    folder = copy_of(tiny, tmp_path / "bin", drop=("model.safetensors",))
    torch.save(load_file(os.path.join(tiny, "model.safetensors")), os.path.join(folder, "pytorch_model.bin"))
    text = load_text_encoder(folder).encode(PROMPTS)
    torch.testing.assert_close(text.features, encoder.encode(PROMPTS).features, atol=0, rtol=0)


class _RunsCode:
    """Unpickling this calls os.mkdir(path): what a malicious checkpoint would do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_a_pytorch_model_bin_holding_code_is_refused_unrun(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path / "evil", drop=("model.safetensors",))
    marker = str(tmp_path / "code_ran")
    state = dict(load_file(os.path.join(tiny, "model.safetensors")), payload=_RunsCode(marker))
    torch.save(state, os.path.join(folder, "pytorch_model.bin"))
    with pytest.raises(InfinityError, match="refused to load"):
        load_text_encoder(folder)
    assert not os.path.exists(marker)


# --- bad folders -----------------------------------------------------------------------------------

def test_missing_folder(tmp_path):
    folder = str(tmp_path / "flan-t5-xl")
    with pytest.raises(InfinityError) as err:
        load_text_encoder(folder)
    msg = str(err.value)
    assert folder in msg and "no such folder" in msg and "google/flan-t5-xl" in msg


def test_a_file_instead_of_a_folder(tiny):
    path = os.path.join(tiny, "model.safetensors")
    with pytest.raises(InfinityError, match="this is a file.*give the folder's path"):
        load_text_encoder(path)


def test_folder_without_config(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path / "t5", drop=("config.json",))
    with pytest.raises(InfinityError) as err:
        load_text_encoder(folder)
    msg = str(err.value)
    assert folder in msg and "no config.json" in msg and "google/flan-t5-xl" in msg


def test_config_of_another_model(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path / "t5")
    edit_config(folder, model_type="bert")
    with pytest.raises(InfinityError) as err:
        load_text_encoder(folder)
    msg = str(err.value)
    assert folder in msg and "describes a bert model, not a T5" in msg and "google/flan-t5-xl" in msg


def test_folder_without_weights(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path / "t5", drop=("model.safetensors",))
    with pytest.raises(InfinityError) as err:
        load_text_encoder(folder)
    msg = str(err.value)
    assert folder in msg and "no model weights" in msg
    assert "model.safetensors" in msg and "pytorch_model.bin" in msg and "google/flan-t5-xl" in msg


def test_folder_with_a_missing_shard(tiny, tmp_path):
    from transformers import T5EncoderModel

    folder = copy_of(tiny, tmp_path / "t5", drop=("model.safetensors",))
    T5EncoderModel.from_pretrained(tiny, local_files_only=True).save_pretrained(folder, max_shard_size="100KB")
    shards = sorted(n for n in os.listdir(folder) if n.startswith("model-"))
    assert len(shards) > 1
    os.remove(os.path.join(folder, shards[-1]))
    with pytest.raises(InfinityError, match=f"weight shards missing: {shards[-1]}"):
        load_text_encoder(folder)


def test_folder_without_tokenizer_files(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path / "t5", drop=("tokenizer.json", "spiece.model"))
    with pytest.raises(InfinityError) as err:
        load_text_encoder(folder)
    msg = str(err.value)
    assert folder in msg and "no tokenizer files" in msg
    assert "google/flan-t5-xl" in msg and "spiece.model" in msg and "tokenizer.json" in msg


def test_tokenizer_of_a_bigger_vocabulary_than_the_model(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path / "t5")
    edit_config(folder, vocab_size=100)
    with pytest.raises(InfinityError, match="tokenizer has 384 tokens but the model only 100"):
        load_text_encoder(folder)


def test_weights_that_do_not_fit_the_config(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path / "t5")
    edit_config(folder, d_ff=128)
    with pytest.raises(InfinityError) as err:
        load_text_encoder(folder)
    assert folder in str(err.value) and "download google/flan-t5-xl again" in str(err.value).lower()


def test_an_unreadable_tokenizer(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path / "t5")
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        f.write('{"version": "1.0", "model": ')  # cut short
    with pytest.raises(InfinityError) as err:
        load_text_encoder(folder)
    msg = str(err.value)
    assert folder in msg and "could not read the tokenizer" in msg and "tokenizer.json" in msg


def test_spiece_model_alone_without_protobuf_names_protobuf(tiny, tmp_path, monkeypatch):
    from infinity_core.weights import t5_files
    folder = copy_of(tiny, tmp_path / "t5", drop=("tokenizer.json",))
    monkeypatch.setattr(t5_files, "_installed", lambda module: module != "google.protobuf")
    with pytest.raises(InfinityError) as err:
        load_text_encoder(folder)
    msg = str(err.value)
    assert "protobuf" in msg and "not installed" in msg and "tokenizer.json" in msg and "tiktoken" not in msg


def test_a_t5_of_another_width_is_refused_at_load(tmp_path):
    from infinity_core.weights.t5_files import check_text_width
    narrow = load_text_encoder(write_tiny_t5(str(tmp_path / "narrow"), d_model=64))
    with pytest.raises(InfinityError, match="64-wide features, but the transformer reads 128-wide"):
        check_text_width(narrow, 128, str(tmp_path / "narrow"))
    check_text_width(narrow, 64, str(tmp_path / "narrow"))


def test_a_prompt_over_512_tokens_warns_that_it_was_cut(encoder, caplog):
    with caplog.at_level("WARNING", logger="infinity_core.network.text"):
        encoder.encode(["a cat"])
        assert not caplog.records
        encoder.encode(["a cat", "word " * 600])
    cut = [r.getMessage() for r in caplog.records if r.name == "infinity_core.network.text"]
    assert len(cut) == 1 and "Prompt 2 of 2" in cut[0] and "reads 512, so the rest was cut" in cut[0]
