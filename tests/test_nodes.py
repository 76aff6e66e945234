"""The nodes as ComfyUI uses them: the pack imported by file location (not from sys.path), its nodes
listed through comfy_entrypoint, graphs run node by node on tiny models, without ComfyUI and with
stand-ins for its modules (memory manager, progress bar, cancel, model folders)."""
from __future__ import annotations

import importlib
import shutil
import sys
import traceback
from pathlib import Path

import pytest
import torch
from PIL import Image

import comfy_stubs
import run_workflow as rw

REPO = Path(__file__).resolve().parents[1]
NODE_IDS = {"InfinityStyleLoader", "InfinityStyleConditioner", "InfinityStyleTextEncode",
            "InfinityStyleStyleImageEncoder", "InfinityStyleContentImageEncoder", "InfinityStyleStageScheduler",
            "InfinityStyleRegions", "InfinityStyleSampler", "InfinityStyleDecode", "InfinityStyleStageProbe"}
QUICK = {"pixel_budget": "0.06M"}           # 7 scales, 256 px
QUICK_STAGES = {"fine_steps": "4-6"}       # the fine stage must fit those 7 scales


class Pack:
    """The pack loaded under its own module name, with its nodes by id."""

    def __init__(self, name: str):
        self.name = name
        self.module = rw.load_pack(name)
        self.nodes = rw.pack_nodes(self.module)
        self.specs = {node_id: rw.spec_of(cls) for node_id, cls in self.nodes.items()}

    def mod(self, path: str):
        return importlib.import_module(f"{self.name}.{path}")

    def widgets(self, node_id: str, **changes) -> dict:
        """The node's widget defaults, with some changed."""
        values = {w.name: w.default for w in self.specs[node_id].widgets}
        assert set(changes) <= set(values), set(changes) - set(values)
        return {**values, **changes}

    def run(self, node_id: str, _links=None, **widgets):
        """Execute one node with its default widgets (some changed) and linked inputs."""
        return self.nodes[node_id].execute(**self.widgets(node_id, **widgets), **(_links or {}))

    def error(self, node_id: str, _links=None, **widgets) -> str:
        """The message of the InfinityError one node raises; checks it carries no deep stack."""
        with pytest.raises(self.mod("infinity_core.errors").InfinityError) as caught:
            self.run(node_id, _links, **widgets)
        exc = caught.value
        assert exc.__cause__ is None and exc.__suppress_context__
        frames = [f.filename for f in traceback.extract_tb(exc.__traceback__)]
        pack_frames = [name for name in frames if str(REPO / "tests") not in name]
        assert pack_frames == [str(REPO / "nodes" / "common.py")], "the engine's stack should not reach the user"
        return str(exc)


@pytest.fixture(scope="session")
def plain(tmp_path_factory):
    assert "comfy" not in sys.modules and "comfy_api" not in sys.modules
    pack = Pack("infinitystyle_plain")
    pack.models = tmp_path_factory.mktemp("models")
    pack.files = rw.build_tiny_models(pack.models, pack.name)
    pack.mod("nodes.comfy_bridge").use_models_dir(str(pack.models))
    return pack


USER_INFINITY = "/user/set/in/extra_model_paths/infinity"


@pytest.fixture(scope="session")
def comfy(plain):
    with comfy_stubs.installed(REPO, str(plain.models), {"infinity": [USER_INFINITY]}) as (recorder, modules):
        pack = Pack("infinitystyle_comfy")
    pack.recorder, pack.stubs, pack.files, pack.models = recorder, modules, plain.files, plain.models
    return pack


def loaded(pack):
    return pack.run("InfinityStyleLoader", **pack.files).args


def main_graph(pack, style_image, sampler=None, stages=None, style_links=None):
    """Loader -> three prompts; style image -> encoder; stage scheduler; sampler -> decode. Returns
    (image, codes, model, stage scheduler output)."""
    model, vae, text_encoder = loaded(pack)
    cond = pack.run("InfinityStyleConditioner", {"text_encoder": text_encoder}).args[0]
    staged = pack.run("InfinityStyleStageScheduler", **{**QUICK_STAGES, **(stages or {})})
    styles = pack.run("InfinityStyleStyleImageEncoder", {"image": style_image, **(style_links or {})}).args[0]
    codes = pack.run("InfinityStyleSampler", {"model": model, "vae": vae, "conditioning": cond, "styles": styles,
                                              "stages": staged.args[0]}, **{**QUICK, **(sampler or {})}).args[0]
    image = pack.run("InfinityStyleDecode", {"vae": vae, "codes": codes}).args[0]
    return image, codes, model, staged


def style_picture(h=96, w=64, channels=3, batch=1, seed=0):
    return torch.rand(batch, h, w, channels, generator=torch.Generator().manual_seed(seed))


# --- registration ----------------------------------------------------------------------------------

def test_pack_registers_through_comfy_entrypoint_only(plain):
    assert set(plain.nodes) == NODE_IDS
    assert not hasattr(plain.module, "NODE_CLASS_MAPPINGS"), "ComfyUI would ignore comfy_entrypoint"
    assert Path(plain.module.__file__) == REPO / "__init__.py"


def test_top_level_init_is_import_light():
    name = "infinitystyle_light"
    rw.load_pack(name)
    assert f"{name}.nodes" not in sys.modules and f"{name}.infinity_core" not in sys.modules


def test_every_input_and_output_has_a_tooltip_and_every_node_a_description(plain):
    for node_id, cls in plain.nodes.items():
        schema = cls.define_schema()
        assert schema.description and schema.display_name and schema.category == "InfinityStyle"
        for inp in schema.inputs:
            assert inp.tooltip, f"{node_id}.{inp.id} has no tooltip"
        for out in schema.outputs:
            assert out.tooltip and out.display_name, f"{node_id} output {out.display_name} has no tooltip"


def test_io_mirror_refuses_options_comfyui_would_refuse(plain):
    io = plain.mod("nodes._api").io
    with pytest.raises(TypeError):
        io.Int.Input("steps", default=1, multiline=True)
    with pytest.raises(TypeError):
        io.Combo.Input("mode", options=["a"], force_input=True)


# --- running the graph ----------------------------------------------------------------------------

def test_main_graph_runs_without_comfyui(plain):
    image, codes, model, _ = main_graph(plain, style_picture(), sampler={"batch_size": 2, "seed": 5})
    assert image.shape == (2, 256, 256, 3) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    assert plain.mod("nodes.comfy_bridge").IN_COMFY is False


def test_image_i_of_a_batch_is_the_single_run_with_seed_plus_i(plain):
    _, batch, _, _ = main_graph(plain, style_picture(), sampler={"batch_size": 3, "seed": 10})
    _, single, _, _ = main_graph(plain, style_picture(), sampler={"batch_size": 1, "seed": 12})
    assert torch.equal(batch.summed[2], single.summed[0])
    assert not torch.equal(batch.summed[0], batch.summed[1])


def test_main_graph_runs_through_comfyui_memory_manager_with_progress_previews(comfy):
    rec = comfy.recorder
    rec.loads.clear(), rec.full_loads.clear(), rec.progress.clear()
    image, codes, model, _ = main_graph(comfy, style_picture(), sampler={"batch_size": 2})
    assert image.shape == (2, 256, 256, 3)
    patched = [p for load in rec.loads for p in load]
    assert all(isinstance(p, comfy.stubs.comfy_model_patcher.ModelPatcher) for p in patched)
    assert any(p.model.inner is model.obj for p in patched), "the transformer goes through load_models_gpu"
    assert all(rec.full_loads), "partial loads would leave the engine's inner parameters behind"
    steps = len(codes.schedule) * 2
    sampling, decoding = rec.progress[:steps], rec.progress[steps:]
    assert [value for value, _, _ in sampling] == list(range(1, steps + 1))
    for value, total, preview in sampling:
        kind, picture, size = preview
        assert total == steps and kind == "JPEG" and isinstance(picture, Image.Image) and size == 512
    assert [(value, total) for value, total, _ in decoding] == [(1, 2), (2, 2)], "Infinity Decode's own bar"
    linear = comfy.stubs.comfy_ops.disable_weight_init.Linear
    assert isinstance(model.obj.blocks[0].sa.mat_qkv, linear), "layers come from comfy.ops"


def test_text_encoder_dtype_is_what_comfyui_says_the_device_runs(comfy):
    _, _, text_encoder = loaded(comfy)
    assert text_encoder.obj.dtype == torch.float32  # ComfyUI's fp16 choice is not runnable on its CPU


def test_precision_choice_sets_the_transformer_blocks_dtype(plain):
    model, _, _ = plain.run("InfinityStyleLoader", **{**plain.files, "precision": "bf16"}).args
    assert model.obj.compute_dtype == torch.bfloat16
    assert model.obj.blocks[0].ffn.fc1.weight.dtype == torch.bfloat16


def test_model_folders_keep_the_users_paths_first(comfy):
    fp = comfy.stubs.folder_paths
    paths, extensions = fp.folder_names_and_paths["infinity"]
    assert paths == [USER_INFINITY, str(comfy.models / "infinity")]
    assert {".pth", ".safetensors"} <= set(extensions)
    text_paths = fp.folder_names_and_paths["text_encoders"][0]
    assert text_paths[:2] == [str(comfy.models / d) for d in ("text_encoders", "clip")]
    assert comfy.files["transformer"] in rw.spec_of(comfy.nodes["InfinityStyleLoader"]).widgets[0].options


def test_cancel_stops_within_one_scale_and_leaves_the_model_clean(comfy):
    rec, mm = comfy.recorder, comfy.stubs.comfy_model_management
    rec.progress.clear()
    rec.on_progress = lambda value: value == 1 and mm.interrupt_current_processing(True)  # during scale 2
    try:
        with pytest.raises(mm.InterruptProcessingException):
            main_graph(comfy, style_picture())
    finally:
        rec.on_progress = None
    assert len(rec.progress) == 1
    rec.progress.clear()
    image, codes, model, _ = main_graph(comfy, style_picture())
    assert len(rec.progress) == len(codes.schedule) + 1  # every scale, then the decode
    assert model.obj.attention_control is None


def test_plain_text_to_image_uses_the_same_sampler(plain):
    model, vae, text_encoder = loaded(plain)
    cond = plain.run("InfinityStyleTextEncode", {"text_encoder": text_encoder}, negative="blurry").args[0]
    codes = plain.run("InfinityStyleSampler", {"model": model, "vae": vae, "conditioning": cond},
                      **QUICK, batch_size=2).args[0]
    assert plain.run("InfinityStyleDecode", {"vae": vae, "codes": codes}).args[0].shape == (2, 256, 256, 3)


def test_text_only_style_and_restyling_a_content_image(plain):
    model, vae, text_encoder = loaded(plain)
    links = {"model": model, "vae": vae, "conditioning": plain.run("InfinityStyleConditioner",
                                                                   {"text_encoder": text_encoder}).args[0]}
    stages = plain.run("InfinityStyleStageScheduler", **QUICK_STAGES).args[0]
    text_only = plain.run("InfinityStyleSampler", {**links, "stages": stages}, **QUICK).args[0]
    assert text_only.summed.shape == (1, 32, 1, 16, 16)
    content = plain.run("InfinityStyleContentImageEncoder", {"image": style_picture(h=60, w=120)}).args[0]
    restyled = plain.run("InfinityStyleSampler", {**links, "stages": stages, "content": content}, **QUICK,
                         aspect="from content image").args[0]
    assert restyled.schedule.h_div_w == 0.5  # the template nearest to the content's 60/120


def test_inputs_are_never_modified(plain):
    image, mask, content = style_picture(h=40, w=50, batch=2), torch.rand(1, 20, 30), style_picture(seed=3)
    before = [t.clone() for t in (image, mask, content)]
    model, vae, text_encoder = loaded(plain)
    styles = plain.run("InfinityStyleStyleImageEncoder", {"image": image, "mask": mask}).args[0]
    plain.run("InfinityStyleSampler", {
        "model": model, "vae": vae, "styles": styles,
        "conditioning": plain.run("InfinityStyleConditioner", {"text_encoder": text_encoder}).args[0],
        "stages": plain.run("InfinityStyleStageScheduler", **QUICK_STAGES).args[0],
        "content": plain.run("InfinityStyleContentImageEncoder", {"image": content}).args[0]}, **QUICK)
    assert all(torch.equal(a, b) for a, b in zip(before, (image, mask, content)))


# --- the stage scheduler ---------------------------------------------------------------------------

def test_sampler_hands_each_scales_preview_to_the_stage_strip(comfy):
    """In ComfyUI the sampler's UI output lists the grids it ran and one preview per scale (of the
    first image), saved in ComfyUI's temp folder, for the strip on the Stage Scheduler."""
    model, vae, text_encoder = loaded(comfy)
    out = comfy.run("InfinityStyleSampler", {
        "model": model, "vae": vae,
        "conditioning": comfy.run("InfinityStyleConditioner", {"text_encoder": text_encoder}).args[0],
        "stages": comfy.run("InfinityStyleStageScheduler", **QUICK_STAGES).args[0]},
        **QUICK, batch_size=2, aspect="3:4 portrait")
    plan = out.args[0].schedule
    assert out.ui["scale_grids"] == [list(hw) for hw in plan.scales] and len(plan) == 7
    entries = out.ui["scale_previews"]
    assert len(entries) == len(plan) and len({e["filename"] for e in entries}) == len(plan)
    temp = Path(comfy.stubs.folder_paths.get_temp_directory())
    sizes = []
    for entry in entries:
        assert entry["type"] == "temp" and entry["subfolder"] == ""
        with Image.open(temp / entry["filename"]) as picture:
            sizes.append(picture.size)
    assert sizes[-1][1] > sizes[-1][0], "a portrait's previews are portrait"
    assert sizes[0] < sizes[-1], "the previews follow the scales"


def test_a_switched_off_stage_text_is_not_read(plain):
    stages = plain.run("InfinityStyleStageScheduler", fine_steps="4-700000000", query_sharing=False).args[0]
    assert stages.fine_steps == frozenset() and not stages.query_sharing
    stages = plain.run("InfinityStyleStageScheduler", key_steps="x", key_sharing=False, feature_init=False).args[0]
    assert stages.key_steps == frozenset()
    assert "past the last scale" in plain.error("InfinityStyleStageScheduler", fine_steps="4-700000000")


def test_stage_scheduler_defaults_are_the_papers(plain):
    stages = plain.run("InfinityStyleStageScheduler").args[0]
    assert stages == plain.mod("infinity_core.style").Stages()


# --- bad input: a clear message, no deep stack -----------------------------------------------------

def test_missing_model_file_names_the_folder_to_put_it_in(plain):
    message = plain.error("InfinityStyleLoader", **{**plain.files, "transformer": "infinity_2b_reg.pth"})
    assert "infinity_2b_reg.pth" in message and str(plain.models / "infinity") in message
    message = plain.error("InfinityStyleLoader", **{**plain.files, "text_encoder": "flan-t5-xl"})
    assert str(plain.models / "text_encoders") in message


def test_a_missing_file_is_left_to_comfyuis_check_of_that_input_alone(plain):
    # ComfyUI repeats a validate_inputs message on every input the method names, and checks the
    # others against their lists, one error per input (tests/e2e checks this in a real ComfyUI).
    loader = plain.nodes["InfinityStyleLoader"]
    assert "validate_inputs" not in loader.__dict__
    spec = rw.spec_of(loader)
    files = {w.name: w for w in spec.widgets if w.folder}
    assert {name: w.folder for name, w in files.items()} == loader.MODEL_INPUTS
    assert all(plain.files[name] in w.options for name, w in files.items())


def test_a_wrong_file_in_a_slot_is_named(plain):
    wrong = plain.models / "infinity" / "actually_the_vae.pth"
    shutil.copy(plain.models / "vae" / plain.files["vae"], wrong)
    try:
        message = plain.error("InfinityStyleLoader", **{**plain.files, "transformer": wrong.name})
    finally:
        wrong.unlink()
    assert "actually_the_vae.pth" in message and "not an Infinity transformer" in message


def test_empty_prompts_are_refused(plain):
    _, _, text_encoder = loaded(plain)
    assert "content prompt is empty" in plain.error("InfinityStyleConditioner", {"text_encoder": text_encoder},
                                                    content="   ")
    assert "prompt is empty" in plain.error("InfinityStyleTextEncode", {"text_encoder": text_encoder}, prompt="")


@pytest.mark.parametrize("text", ["2,x", "3-", "7-4"])
def test_step_text_that_does_not_parse(plain, text):
    message = plain.error("InfinityStyleStageScheduler", key_steps=text)
    assert repr(text) in message or text in message


def test_steps_past_the_schedule_say_which_steps_exist(plain):
    model, vae, text_encoder = loaded(plain)
    message = plain.error("InfinityStyleSampler", {
        "model": model, "vae": vae,
        "conditioning": plain.run("InfinityStyleConditioner", {"text_encoder": text_encoder}).args[0],
        "stages": plain.run("InfinityStyleStageScheduler", fine_steps="4-7").args[0]}, **QUICK)
    assert "out of range" in message and "0-6" in message


@pytest.mark.parametrize("h, w, channels", [(37, 91, 4), (700, 20, 3), (16, 16, 1)])
def test_style_image_of_any_size_mode_or_alpha(plain, h, w, channels):
    image, _, _, _ = main_graph(plain, style_picture(h, w, channels))
    assert image.shape == (1, 256, 256, 3)


def test_a_batch_of_style_images_becomes_one_style_each_with_any_size_masks(plain):
    styles = plain.run("InfinityStyleStyleImageEncoder", {"image": style_picture(batch=3),
                                                          "mask": torch.rand(1, 10, 30)}, weight=0.5).args[0]
    assert len(styles) == 3 and all(s.weight == 0.5 and s.mask.shape == (10, 30) for s in styles)
    chained = plain.run("InfinityStyleStyleImageEncoder", {"image": style_picture(), "styles": styles}).args[0]
    assert len(chained) == 4 and chained[:3] == styles
    image, _, _, _ = main_graph(plain, style_picture(batch=2), style_links={"mask": torch.rand(2, 50, 20)})
    assert image.shape == (1, 256, 256, 3)
    message = plain.error("InfinityStyleStyleImageEncoder", {"image": style_picture(batch=3),
                                                             "mask": torch.rand(2, 8, 8)})
    assert "2 masks for 3 style images" in message


def test_other_bad_inputs_get_a_clear_message(plain):
    model, vae, text_encoder = loaded(plain)
    plain_cond = plain.run("InfinityStyleTextEncode", {"text_encoder": text_encoder}).args[0]
    style_cond = plain.run("InfinityStyleConditioner", {"text_encoder": text_encoder}).args[0]
    styles = plain.run("InfinityStyleStyleImageEncoder", {"image": style_picture()}).args[0]
    sample = {"model": model, "vae": vae}
    assert "no style path" in plain.error("InfinityStyleSampler", {**sample, "conditioning": plain_cond,
                                                                   "styles": styles}, **QUICK)
    assert "width x height" in plain.error("InfinityStyleSampler", {**sample, "conditioning": style_cond}, **QUICK,
                                           aspect="custom (custom_size)", custom_size="wide")
    assert "needs a content image" in plain.error("InfinityStyleSampler", {**sample, "conditioning": style_cond},
                                                  **QUICK, aspect="from content image")
    assert "batch of 2 content images" in plain.error("InfinityStyleContentImageEncoder",
                                                      {"image": style_picture(batch=2)})


# --- nodes called directly, as an API prompt calls them (bypassing the widgets' limits) -------------

def test_the_loader_refuses_a_t5_of_another_width(plain):
    folder = plain.models / "text_encoders" / "narrow-t5"
    plain.mod("infinity_core.tiny_t5").write_tiny_t5(str(folder), d_model=64)
    try:
        message = plain.error("InfinityStyleLoader", **{**plain.files, "text_encoder": "narrow-t5"})
    finally:
        shutil.rmtree(folder)  # the models folder is shared with the other node tests
    assert "narrow-t5" in message and "64-wide features" in message and "128-wide" in message


@pytest.fixture(scope="module")
def graph(plain):
    model, vae, text_encoder = loaded(plain)
    cond = plain.run("InfinityStyleConditioner", {"text_encoder": text_encoder}).args[0]
    return {"model": model, "vae": vae, "conditioning": cond}


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("name,value", [
    ("cfg", 0.5), ("cfg", 25.0), ("cfg", NAN), ("cfg", INF), ("tau", 0.0), ("tau", -1.0), ("tau", NAN),
    ("top_p", 1.5), ("top_p", -0.1), ("top_p", NAN), ("top_k", -1), ("top_k", 5000),
    ("batch_size", 0), ("batch_size", -2), ("batch_size", 17), ("seed", -1), ("seed", 2 ** 64),
])
def test_sampler_values_outside_the_widgets_are_refused_by_name(plain, graph, name, value):
    message = plain.error("InfinityStyleSampler", graph, **{"pixel_budget": "0.06M", name: value})
    assert message.startswith(f"{name} must be") and repr(value) in message


# The Sampler node's widget ranges, as ComfyUI shows them: every bound is a value a user can set.
WIDGET_RANGES = {"seed": (0, 2 ** 64 - 1), "cfg": (1.0, 20.0), "tau": (0.05, 2.0), "top_k": (0, 1000),
                 "top_p": (0.0, 1.0), "batch_size": (1, 16)}


def plain_sampler(pack, prompt="a red house", negative="", **widgets):
    """The plain graph (Loader -> Text Encode -> Sampler); returns (codes, model, text encoder)."""
    model, vae, text_encoder = loaded(pack)
    cond = pack.run("InfinityStyleTextEncode", {"text_encoder": text_encoder}, prompt=prompt, negative=negative).args[0]
    codes = pack.run("InfinityStyleSampler", {"model": model, "vae": vae, "conditioning": cond},
                     **{**QUICK, **widgets}).args[0]
    return codes, model.obj, text_encoder.obj


def test_the_sampler_takes_every_bound_of_its_widgets(plain):
    widgets = {w.name: w for w in plain.specs["InfinityStyleSampler"].widgets}
    assert {name: (widgets[name].min, widgets[name].max) for name in WIDGET_RANGES} == WIDGET_RANGES
    for end in (0, 1):
        codes, _, _ = plain_sampler(plain, **{name: bounds[end] for name, bounds in WIDGET_RANGES.items()})
        assert len(codes.summed) == WIDGET_RANGES["batch_size"][end] and torch.isfinite(codes.summed).all()


def test_seeds_wrap_around_at_2_to_the_64(plain):
    """Seed 2^64 - 1 with a batch of 2: image 0 uses 2^64 - 1, image 1 seed 0."""
    assert plain.mod("infinity_core.sampler").seeds_for(2 ** 64 - 1, 3) == [2 ** 64 - 1, 0, 1]
    batch, model, _ = plain_sampler(plain, seed=2 ** 64 - 1, batch_size=2)
    assert torch.equal(batch.summed[0], plain_sampler(plain, seed=2 ** 64 - 1)[0].summed[0])
    assert torch.equal(batch.summed[1], plain_sampler(plain, seed=0)[0].summed[0])


def test_the_plain_sampler_uses_the_negative_prompt(plain):
    """Plain text-to-image with a negative prompt samples what the engine samples with that negative
    (as each image's unconditional text), not what it samples without one."""
    codes, model, text_encoder = plain_sampler(plain, negative="blurry", seed=3, batch_size=2)
    engine = plain.mod("infinity_core.sampler")
    text = text_encoder.encode(["a red house", "blurry"])
    settings = engine.SamplingSettings(cfg=3.0, tau=0.5, top_k=900, top_p=0.97)  # the widgets' defaults
    run = lambda negative: engine.generate(model, text.select([0, 0]), codes.schedule, [3, 4], settings,  # noqa: E731
                                           negative=negative).summed_codes
    expected = run(text.select([1]))
    assert torch.equal(codes.summed, expected)
    assert not torch.equal(expected, run(None)), "the negative must change the images for the check to bite"


def test_an_aspect_not_in_the_list_is_refused_with_the_list(plain, graph):
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
    ("InfinityStyleStyleImageEncoder", {"image": torch.rand(1, 8, 8, 3), "mask": torch.full((1, 8, 8), 7.0)},
     "Mask values go from 0 (the style does not paint here) to 1 (it paints here); this mask holds 7 to 7"),
    ("InfinityStyleStyleImageEncoder", {"image": torch.rand(1, 8, 8, 3), "mask": torch.linspace(-5, 1, 64).view(8, 8)},
     "this mask holds -5 to 1"),
    ("InfinityStyleStyleImageEncoder", {"image": torch.rand(1, 8, 8, 3), "mask": torch.ones(64)},
     "A mask is [H, W] (or a batch [B, H, W]); this one has shape (64,)"),
])
def test_empty_or_nan_pictures_and_bad_weights_are_refused_by_name(plain, node, inputs, fragment):
    widgets = {k: inputs.pop(k) for k in list(inputs) if k == "weight"}
    assert fragment in plain.error(node, inputs, **widgets)


def test_comfyui_log_names_each_model_not_a_shell(comfy):
    model, vae, text_encoder = loaded(comfy)
    names = [type(m.patcher.model).__name__ for m in (model, vae, text_encoder)]
    assert names == ["InfinityTransformer", "BSQVAE", "T5EncoderModel"]


# --- the stage probe --------------------------------------------------------------------------------

def probe_graph(pack, **widgets):
    model, vae, text_encoder = loaded(pack)
    return pack.run("InfinityStyleStageProbe", {"model": model, "vae": vae, "text_encoder": text_encoder},
                    **{**QUICK, **widgets}).args


def test_stage_probe_runs_base_and_every_step_with_progress_and_previews(comfy):
    rec = comfy.recorder
    rec.progress.clear()
    grid, plot, images = probe_graph(comfy, seed=4)
    runs, scales = 8, 7  # the base, then steps 0-6 of the 0.06M schedule
    assert images.shape == (runs, 256, 256, 3)
    assert grid.shape == (1, 2 * (256 + 24) + 3 * 4, 4 * 256 + 5 * 4, 3)
    assert plot.shape[0] == 1 and plot.shape[-1] == 3
    sampling, decoding = rec.progress[:runs * scales], rec.progress[runs * scales:]
    assert [(value, total) for value, total, _ in sampling] == [(v, runs * scales) for v in range(1, 57)]
    assert all(kind == "JPEG" and isinstance(picture, Image.Image) for _, _, (kind, picture, _) in sampling)
    assert [(value, total) for value, total, _ in decoding] == [(v, runs) for v in range(1, runs + 1)]
    # the grid: the base image, then steps 0-6, in rows of four 256 px tiles over 24 px labels
    gap = 4
    for i in range(runs):
        x, y = gap + (i % 4) * (256 + gap), gap + (i // 4) * (256 + 24 + gap)
        torch.testing.assert_close(grid[0, y:y + 256, x:x + 256], (images[i] * 255).round() / 255, rtol=0, atol=1e-6)
    # the plot: one bar per step 0-6, as tall as that step's mean difference from the base image
    differences = [(images[i] - images[0]).abs().mean().item() for i in range(1, runs)]
    assert min(differences) > 0, "every step must draw a bar for the check to bite"
    bar = torch.tensor(comfy.mod("infinity_core.probe.picture").BAR) / 255
    is_bar = ((plot[0] - bar).abs().amax(-1) < 1e-6).to(torch.int8)
    columns = is_bar.any(0).nonzero().flatten().tolist()
    starts = [c for c in columns if c - 1 not in columns]
    heights = [int(is_bar[:, c].sum()) for c in starts]
    assert len(heights) == scales
    for height, difference in zip(heights, differences):
        assert height == pytest.approx(max(heights) * difference / max(differences), abs=1.5)


def test_the_probes_base_image_is_the_plain_sampler_image(plain):
    _, _, images = probe_graph(plain, seed=4, base_prompt="a red house", alternative_prompt="a blue boat")
    model, vae, text_encoder = loaded(plain)
    cond = plain.run("InfinityStyleTextEncode", {"text_encoder": text_encoder}, prompt="a red house").args[0]
    codes = plain.run("InfinityStyleSampler", {"model": model, "vae": vae, "conditioning": cond}, **QUICK,
                      seed=4).args[0]
    assert torch.equal(images[0], plain.run("InfinityStyleDecode", {"vae": vae, "codes": codes}).args[0][0])


def test_stage_probe_cancel_stops_within_one_scale(comfy):
    rec, mm = comfy.recorder, comfy.stubs.comfy_model_management
    rec.progress.clear()
    rec.on_progress = lambda value: value == 10 and mm.interrupt_current_processing(True)  # run 2, scale 3
    try:
        with pytest.raises(mm.InterruptProcessingException):
            probe_graph(comfy)
    finally:
        rec.on_progress = None
    assert len(rec.progress) == 10


def test_stage_probe_refuses_a_seed_outside_the_widget_by_name(plain):
    model, vae, text_encoder = loaded(plain)
    message = plain.error("InfinityStyleStageProbe", {"model": model, "vae": vae, "text_encoder": text_encoder},
                          **QUICK, seed=2 ** 64)
    assert message.startswith("seed must be")


def test_stage_probe_needs_both_prompts(plain):
    model, vae, text_encoder = loaded(plain)
    assert "needs both prompts" in plain.error("InfinityStyleStageProbe", {"model": model, "vae": vae,
                                                                           "text_encoder": text_encoder},
                                               alternative_prompt=" ")


# --- semantic style regions -----------------------------------------------------------------------

def test_three_unmasked_styles_painted_region_by_region_with_a_region_map(plain):
    """The node runs the engine's regions: its codes and region maps are the engine's for the same
    inputs (seeds 0 and 1), and without Style Regions its codes are the global mix's."""
    model, vae, text_encoder = loaded(plain)
    links = {"model": model, "vae": vae,
             "conditioning": plain.run("InfinityStyleConditioner", {"text_encoder": text_encoder}).args[0],
             "stages": plain.run("InfinityStyleStageScheduler", **QUICK_STAGES).args[0],
             "styles": plain.run("InfinityStyleStyleImageEncoder", {"image": style_picture(batch=3)}).args[0]}
    regions = plain.run("InfinityStyleRegions", regions="3", attention="hard").args[0]
    assert (regions.count, regions.hard) == (3, True)
    codes, region_map = plain.run("InfinityStyleSampler", {**links, "regions": regions}, **QUICK, batch_size=2).args
    global_codes, _ = plain.run("InfinityStyleSampler", links, **QUICK, batch_size=2).args

    style, found = plain.mod("infinity_core.style"), []
    settings = plain.mod("infinity_core.sampler").SamplingSettings(cfg=3.0, tau=0.5, top_k=900, top_p=0.97)

    def engine(**kw):
        return style.stylize(model.obj, vae.obj, links["conditioning"], links["styles"], links["stages"],
                             codes.schedule, [0, 1], settings, **kw)
    assert torch.equal(codes.summed, engine(regions=style.Regions(count=3, hard=True), on_regions=found.append))
    assert torch.equal(global_codes.summed, engine())
    assert not torch.equal(codes.summed, global_codes.summed)
    draw = plain.mod("infinity_core.style.region_map").draw_region_map
    images = plain.mod("infinity_core.images")
    assert len(found) == 2 and all(r.plan.content.count == 3 for r in found)
    assert torch.equal(region_map, torch.cat([images.from_pil(draw(r)) for r in found]))
    assert plain.run("InfinityStyleRegions", mode="global mix").args[0] is None


def test_regions_on_a_plain_prompt_or_a_style_in_words_are_refused(plain):
    model, vae, text_encoder = loaded(plain)
    regions = plain.run("InfinityStyleRegions").args[0]
    plain_cond = plain.run("InfinityStyleTextEncode", {"text_encoder": text_encoder}).args[0]
    style_cond = plain.run("InfinityStyleConditioner", {"text_encoder": text_encoder}).args[0]
    stages = plain.run("InfinityStyleStageScheduler", **QUICK_STAGES).args[0]
    assert "no style path" in plain.error("InfinityStyleSampler", {"model": model, "vae": vae, "conditioning": plain_cond,
                                                                   "regions": regions}, **QUICK)
    assert "in words only" in plain.error("InfinityStyleSampler", {"model": model, "vae": vae, "stages": stages,
                                                                   "conditioning": style_cond, "regions": regions},
                                          **QUICK)


def test_a_mask_a_rounding_error_past_0_or_1_is_taken_as_0_or_1(plain):
    mask = torch.ones(1, 8, 8) + 1e-6  # what other nodes' mask arithmetic can leave
    styles = plain.run("InfinityStyleStyleImageEncoder", {"image": torch.rand(1, 8, 8, 3), "mask": mask}).args[0]
    assert torch.equal(styles[0].mask, mask[0])


@pytest.mark.parametrize("widgets, fragment", [
    ({"regions": "many"}, "regions 'many' is not one of: auto, 2, 3, 4, 5, 6, 7, 8."),
    ({"mode": "semantic"}, "mode 'semantic' is not one of: semantic regions, global mix."),
    ({"attention": "firm"}, "attention 'firm' is not one of: soft, hard."),
    ({"strength": -1.0}, "The region strength must be from 0 to 10, got -1.0."),
    ({"position_weight": NAN}, "The position weight must be from 0 to 2, got nan."),
])
def test_style_regions_settings_outside_its_widgets_are_refused_by_name(plain, widgets, fragment):
    assert plain.error("InfinityStyleRegions", **widgets) == fragment


def test_regions_with_every_style_left_out_say_so(plain):
    model, vae, text_encoder = loaded(plain)
    style_cond = plain.run("InfinityStyleConditioner", {"text_encoder": text_encoder}).args[0]
    stages = plain.run("InfinityStyleStageScheduler", **QUICK_STAGES).args[0]
    styles = plain.run("InfinityStyleStyleImageEncoder", {"image": torch.rand(1, 16, 16, 3)}, weight=0.0).args[0]
    message = plain.error("InfinityStyleSampler", {"model": model, "vae": vae, "stages": stages, "styles": styles,
                                                   "conditioning": style_cond,
                                                   "regions": plain.run("InfinityStyleRegions").args[0]}, **QUICK)
    assert "every style is left out (1 with weight 0 or an all-black mask)" in message and "words only" not in message
