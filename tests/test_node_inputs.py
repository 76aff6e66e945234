"""Nodes called directly, as an API prompt calls them (bypassing the widgets' limits): every bad
value gets a clear error naming the input."""
from __future__ import annotations

import shutil

import pytest
import torch

from test_nodes import comfy, loaded, plain  # noqa: F401  (the session's pack on tiny models)


def test_the_loader_refuses_a_t5_of_another_width(plain):  # noqa: F811
    folder = plain.models / "text_encoders" / "narrow-t5"
    plain.mod("infinity_core.tiny_t5").write_tiny_t5(str(folder), d_model=64)
    try:
        message = plain.error("InfinityStyleLoader", **{**plain.files, "text_encoder": "narrow-t5"})
    finally:
        shutil.rmtree(folder)  # the models folder is shared with the other node tests
    assert "narrow-t5" in message and "64-wide features" in message and "128-wide" in message


@pytest.fixture(scope="module")
def graph(plain):  # noqa: F811
    model, vae, text_encoder = loaded(plain)
    cond = plain.run("InfinityStyleConditioner", {"text_encoder": text_encoder}).args[0]
    return {"model": model, "vae": vae, "conditioning": cond}


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("name,value", [
    ("cfg", 0.5), ("cfg", 25.0), ("cfg", NAN), ("cfg", INF), ("tau", 0.0), ("tau", -1.0), ("tau", NAN),
    ("top_p", 1.5), ("top_p", -0.1), ("top_p", NAN), ("top_k", -1), ("top_k", 5000),
    ("batch_size", 0), ("batch_size", -2), ("batch_size", 17), ("seed", -1), ("seed", 2 ** 64),
])
def test_sampler_values_outside_the_widgets_are_refused_by_name(plain, graph, name, value):  # noqa: F811
    message = plain.error("InfinityStyleSampler", graph, **{"pixel_budget": "0.06M", name: value})
    assert message.startswith(f"{name} must be") and repr(value) in message


def test_an_aspect_not_in_the_list_is_refused_with_the_list(plain, graph):  # noqa: F811
    message = plain.error("InfinityStyleSampler", graph, pixel_budget="0.06M", aspect="5:4 wide")
    assert "'5:4 wide' is not one of" in message and "1:1 square" in message


@pytest.mark.parametrize("node,inputs,fragment", [
    ("InfinityStyleStyleImageEncoder", {"image": torch.zeros(1, 0, 0, 3)}, "style image is empty"),
    ("InfinityStyleStyleImageEncoder", {"image": torch.full((1, 8, 8, 3), NAN)}, "style image holds NaN"),
    ("InfinityStyleStyleImageEncoder", {"image": torch.rand(1, 8, 8, 3), "mask": torch.full((1, 8, 8), NAN)},
     "mask holds NaN"),
    ("InfinityStyleStyleImageEncoder", {"image": torch.rand(1, 8, 8, 3), "mask": torch.zeros(1, 0, 0)},
     "mask is empty"),
    ("InfinityStyleStyleImageEncoder", {"image": torch.rand(1, 8, 8, 3), "weight": NAN}, "weight must be"),
    ("InfinityStyleStyleImageEncoder", {"image": torch.rand(1, 8, 8, 3), "weight": -1.0}, "weight must be"),
    ("InfinityStyleContentImageEncoder", {"image": torch.zeros(1, 0, 0, 3)}, "content image is empty"),
])
def test_empty_or_nan_pictures_and_bad_weights_are_refused_by_name(plain, node, inputs, fragment):  # noqa: F811
    widgets = {k: inputs.pop(k) for k in list(inputs) if k == "weight"}
    assert fragment in plain.error(node, inputs, **widgets)


def test_comfyui_log_names_each_model_not_a_shell(comfy):  # noqa: F811
    model, vae, text_encoder = loaded(comfy)
    names = [type(m.patcher.model).__name__ for m in (model, vae, text_encoder)]
    assert names == ["InfinityTransformer", "BSQVAE", "T5EncoderModel"]
