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
            "InfinityStyleRegions", "InfinityStyleSampler", "InfinityStyleDecode"}
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


def test_every_input_has_a_tooltip_and_every_node_a_description(plain):
    for node_id, cls in plain.nodes.items():
        schema = cls.define_schema()
        assert schema.description and schema.display_name and schema.category == "InfinityStyle"
        for inp in schema.inputs:
            assert inp.tooltip, f"{node_id}.{inp.id} has no tooltip"


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
    assert [value for value, _, _ in rec.progress] == list(range(1, steps + 1))
    for value, total, preview in rec.progress:
        kind, picture, size = preview
        assert total == steps and kind == "JPEG" and isinstance(picture, Image.Image) and size == 512
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
    assert len(rec.progress) == len(codes.schedule)
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


# --- the stage scheduler's picture ----------------------------------------------------------------

def _cell_colour(picture: torch.Tensor, pack, step: int) -> tuple:
    p = pack.mod("nodes.schedule_picture")
    x, y = p.MARGIN + p.CELL * step + p.CELL // 2, p.TOP + (p.CELL - 16) // 2
    return tuple(round(float(c) * 255) for c in picture[0, y, x])


def test_stage_picture_marks_every_scale_and_follows_the_edits(plain):
    roles = {name: colour for name, (_, colour, _) in plain.mod("nodes.schedule_picture").ROLES.items()}
    default = plain.run("InfinityStyleStageScheduler").ui.image
    assert default.shape[0] == 1 and default.shape[-1] == 3
    assert [_cell_colour(default, plain, s) for s in (0, 2, 3, 4, 7)] == [
        roles["init"], roles["key"], roles["key"], roles["fine"], roles["fine"]]
    edited = plain.run("InfinityStyleStageScheduler", key_steps="3,4", fine_steps="5-9", query_sharing=False).ui.image
    assert _cell_colour(edited, plain, 2) == roles["init"] and _cell_colour(edited, plain, 4) == roles["key"]
    assert _cell_colour(edited, plain, 9) != roles["fine"], "a switched-off stage is drawn muted"


def test_stage_scheduler_defaults_are_the_papers(plain):
    stages = plain.run("InfinityStyleStageScheduler").args[0]
    assert stages == plain.mod("infinity_core.style").Stages()


# --- bad input: a clear message, no deep stack -----------------------------------------------------

def test_missing_model_file_names_the_folder_to_put_it_in(plain):
    message = plain.error("InfinityStyleLoader", **{**plain.files, "transformer": "infinity_2b_reg.pth"})
    assert "infinity_2b_reg.pth" in message and str(plain.models / "infinity") in message
    validate = plain.nodes["InfinityStyleLoader"].validate_inputs
    assert validate(**{**plain.files, "transformer": "infinity_2b_reg.pth"}) == message
    assert validate(**plain.files) is True
    message = plain.error("InfinityStyleLoader", **{**plain.files, "text_encoder": "flan-t5-xl"})
    assert str(plain.models / "text_encoders") in message


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


# --- semantic style regions -----------------------------------------------------------------------

def test_three_unmasked_styles_painted_region_by_region_with_a_region_map(plain):
    model, vae, text_encoder = loaded(plain)
    links = {"model": model, "vae": vae,
             "conditioning": plain.run("InfinityStyleConditioner", {"text_encoder": text_encoder}).args[0],
             "stages": plain.run("InfinityStyleStageScheduler", **QUICK_STAGES).args[0],
             "styles": plain.run("InfinityStyleStyleImageEncoder", {"image": style_picture(batch=3)}).args[0]}
    regions = plain.run("InfinityStyleRegions", regions="3", attention="hard").args[0]
    assert (regions.count, regions.hard) == (3, True)
    codes, region_map = plain.run("InfinityStyleSampler", {**links, "regions": regions}, **QUICK, batch_size=2).args
    global_codes, note = plain.run("InfinityStyleSampler", links, **QUICK, batch_size=2).args
    assert codes.summed.shape == global_codes.summed.shape and not torch.equal(codes.summed, global_codes.summed)
    assert region_map.shape[0] == 2 and region_map.shape[-1] == 3 and region_map.shape[1] > note.shape[1]
    region_colours = {tuple(c) for c in (region_map[0] * 255).round().flatten(0, 1).tolist()}
    palette = plain.mod("infinity_core.style.region_map").COLOURS
    assert any(tuple(float(v) for v in c) in region_colours for c in palette)
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
