"""Sharded checkpoint folders (Infinity-8B's layout): both shard formats, shard by shard, clear errors."""
import json
import os

import pytest
import torch

from infinity_core.errors import CheckpointError
from infinity_core.network.transformer import build_random_transformer
from infinity_core.tiny import TINY_8B_TRANSFORMER
from infinity_core.weights import checkpoint, sharded
from infinity_core.weights.sharded import checkpoint_bytes, write_sharded
from infinity_core.weights.transformer_file import load_transformer


@pytest.fixture(scope="module")
def tiny_8b_state():
    state = build_random_transformer(TINY_8B_TRANSFORMER, 2).state_dict()
    # the release stores the zero_k_bias buffers; the loader checks and drops them
    return dict(state, **{"block_chunks.1.module.0.sa.zero_k_bias": torch.zeros(64)})


def refused(folder, *fragments):
    with pytest.raises(CheckpointError) as info:
        load_transformer(str(folder))
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("safetensors", [True, False], ids=["safetensors", "bin"])
def test_sharded_folder_loads_as_the_8b_family(tiny_8b_state, tmp_path, safetensors):
    index = write_sharded(tiny_8b_state, str(tmp_path / "w"), shards=3, safetensors=safetensors)
    assert os.path.basename(index) == ("model.safetensors.index.json" if safetensors else "pytorch_model.bin.index.json")
    model = load_transformer(str(tmp_path / "w"))
    assert model.config == TINY_8B_TRANSFORMER and model.config.patchify.factor == 2
    for key, value in model.state_dict().items():
        assert torch.equal(value, tiny_8b_state[key]), key
    assert checkpoint_bytes(str(tmp_path / "w")) == sum(
        os.path.getsize(tmp_path / "w" / f) for f in os.listdir(tmp_path / "w") if not f.endswith(".json"))


def test_shards_are_read_one_at_a_time_and_placed_as_read(tiny_8b_state, tmp_path, monkeypatch):
    """Each shard's tensors reach their device and dtype before the next shard is opened."""
    write_sharded(tiny_8b_state, str(tmp_path / "w"), shards=3)
    events, read = [], checkpoint.read_state_dict
    monkeypatch.setattr(sharded, "read_state_dict", lambda path: events.append(("read", path)) or read(path))
    sharded.read_sharded_state_dict(str(tmp_path / "w"), lambda name, t: events.append(("place", name)) or t)
    shard_of = json.loads((tmp_path / "w" / "model.safetensors.index.json").read_text())["weight_map"]
    assert sum(kind == "read" for kind, _ in events) == 3
    current = None
    for kind, what in events:
        if kind == "read":
            current = os.path.basename(what)
        else:
            assert shard_of[what] == current, f"{what} placed while {current} was open"


def test_sharded_blocks_load_in_the_compute_dtype(tiny_8b_state, tmp_path):
    """Block tensors are the file's rounded to bf16; every other tensor (text, embedding, head) is the
    file's fp32 value unchanged, never rounded through the compute dtype."""
    write_sharded(tiny_8b_state, str(tmp_path / "w"), shards=2, safetensors=False)
    model = load_transformer(str(tmp_path / "w"), dtype=torch.bfloat16)
    loaded = model.state_dict()
    for key, value in loaded.items():
        if key.startswith("block_chunks."):
            assert value.dtype == torch.bfloat16 and torch.equal(value, tiny_8b_state[key].to(torch.bfloat16)), key
        else:
            assert value.dtype == torch.float32 and torch.equal(value, tiny_8b_state[key]), key
    head = tiny_8b_state["head.weight"]
    assert not torch.equal(head.to(torch.bfloat16).float(), head), "fp32 values bf16 cannot hold, for the check to bite"


def test_a_tensor_the_index_promises_but_the_shard_lacks_names_index_and_shard(tiny_8b_state, tmp_path):
    index = write_sharded(tiny_8b_state, str(tmp_path / "w"), shards=2)
    data = json.loads(open(index).read())
    data["weight_map"]["block_chunks.0.module.0.ffn.fc9.weight"] = "model-00001-of-00002.safetensors"
    open(index, "w").write(json.dumps(data))
    refused(tmp_path / "w", index, "says model-00001-of-00002.safetensors holds block_chunks.0.module.0.ffn.fc9.weight")


def test_a_tensor_missing_from_the_whole_folder_is_an_error_naming_the_index(tiny_8b_state, tmp_path):
    state = {k: v for k, v in tiny_8b_state.items() if k != "block_chunks.1.module.1.ca.proj.bias"}
    index = write_sharded(state, str(tmp_path / "w"), shards=2, safetensors=False)
    refused(tmp_path / "w", index, "missing: block_chunks.1.module.1.ca.proj.bias")


def test_absent_shard_no_index_and_bad_index(tiny_8b_state, tmp_path):
    index = write_sharded(tiny_8b_state, str(tmp_path / "w"), shards=3)
    os.remove(tmp_path / "w" / "model-00002-of-00003.safetensors")
    refused(tmp_path / "w", index, "not in the folder: model-00002-of-00003.safetensors")
    os.remove(index)
    refused(tmp_path / "w", "no shard index", "model.safetensors.index.json", "model-00001-of-00003.safetensors")
    (tmp_path / "w" / "model.safetensors.index.json").write_text("{not json")
    refused(tmp_path / "w", "not a readable shard index")
    (tmp_path / "w" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"pos_start": "../x.bin"}}))
    refused(tmp_path / "w", "shard names must be files beside the index", "../x.bin")


def test_a_tensor_in_two_shards_is_taken_from_the_one_the_index_names_with_a_warning(tiny_8b_state, tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    index = write_sharded(tiny_8b_state, str(tmp_path / "w"), shards=2)
    weight_map = json.loads(open(index).read())["weight_map"]
    name = "block_chunks.0.module.0.ffn.fc1.weight"
    assert weight_map[name] == "model-00001-of-00002.safetensors"
    second = str(tmp_path / "w" / "model-00002-of-00002.safetensors")
    save_file({**load_file(second), name: torch.full_like(tiny_8b_state[name], 7.0)}, second)  # a stray copy, read last
    with caplog.at_level("WARNING"):
        model = load_transformer(str(tmp_path / "w"))
    assert torch.equal(model.state_dict()[name], tiny_8b_state[name])
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert f"{name} (in model-00002-of-00002.safetensors; the index names model-00001-of-00002.safetensors)" in warning
