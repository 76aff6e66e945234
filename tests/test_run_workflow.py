"""run_workflow.py: a shipped workflow end to end outside ComfyUI, with tiny random models on a fresh
machine, or with the files of a models folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import run_workflow as rw
from infinity_core.tiny import TINY_FILES

REPO = Path(__file__).resolve().parents[1]
NOISE_NOTICE = "NOISE FROM UNTRAINED WEIGHTS"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The tiny model set, built once for this module (the command builds it when missing)."""
    folder = tmp_path_factory.mktemp("cache")
    rw.build_tiny_models(folder, rw.load_pack().__name__)
    return folder


def test_fresh_machine_runs_the_main_workflow_on_tiny_models_and_says_so(tmp_path, cache):
    result = subprocess.run(
        [sys.executable, str(REPO / "run_workflow.py"), str(REPO / "workflows" / "infinity_style_basic.json"),
         "--out", str(tmp_path / "out"), "--cache", str(cache), "--models", str(tmp_path / "none")],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 2 and "not in" in result.stderr  # an explicit --models must hold the files

    result = subprocess.run(
        [sys.executable, str(REPO / "run_workflow.py"), str(REPO / "workflows" / "infinity_style_basic.json"),
         "--out", str(tmp_path / "out"), "--cache", str(cache)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    assert NOISE_NOTICE in result.stdout
    saved = tmp_path / "out" / "InfinityStyle_00001_.png"
    assert saved.is_file() and Image.open(saved).size == (1024, 1024)


def test_models_folder_with_the_real_file_names_is_used(tmp_path, cache, capsys):
    """A folder laid out like ComfyUI's models/, holding (tiny) files under the released names."""
    models = tmp_path / "models"
    for folder, name, tiny in (("infinity", "infinity_2b_reg.pth", TINY_FILES["transformer"][1]),
                               ("vae", "infinity_vae_d32reg.pth", TINY_FILES["vae"][1])):
        (models / folder).mkdir(parents=True)
        if tiny.endswith(".safetensors"):
            from safetensors.torch import load_file
            torch.save(load_file(str(cache / folder / tiny)), models / folder / name)  # .pth, as released
        else:
            (models / folder / name).write_bytes((cache / folder / tiny).read_bytes())
    (models / "text_encoders").mkdir()
    (models / "text_encoders" / "flan-t5-xl").symlink_to(cache / "text_encoders" / TINY_FILES["text_encoder"][1])

    workflow = tmp_path / "t2i.json"
    data = json.loads((REPO / "workflows" / "infinity_text_to_image.json").read_text())
    sampler = next(n for n in data["nodes"] if n["type"] == "InfinityStyleSampler")
    sampler["widgets_values"][-2] = "0.06M"  # pixel_budget: a quick run
    workflow.write_text(json.dumps(data))

    assert rw.main([str(workflow), "--models", str(models), "--out", str(tmp_path / "out")]) == 0
    assert NOISE_NOTICE not in capsys.readouterr().out
    assert Image.open(tmp_path / "out" / "Infinity_00001_.png").size == (256, 256)


def test_a_workflow_that_does_not_fit_the_nodes_is_refused_clearly(tmp_path, cache, capsys):
    data = json.loads((REPO / "workflows" / "infinity_text_to_image.json").read_text())
    next(n for n in data["nodes"] if n["type"] == "InfinityStyleSampler")["widgets_values"][0] = -5
    workflow = tmp_path / "bad.json"
    workflow.write_text(json.dumps(data))
    assert rw.main([str(workflow), "--cache", str(cache), "--out", str(tmp_path / "out")]) == 2
    assert "seed = -5 is outside" in capsys.readouterr().err


def test_a_damaged_tiny_model_set_is_built_again(tmp_path):
    from infinity_core.tiny import write_tiny_models
    from infinity_core.weights.transformer_file import load_transformer
    paths = write_tiny_models(str(tmp_path))
    whole = Path(paths["transformer"]).read_bytes()
    Path(paths["transformer"]).write_bytes(whole[: len(whole) // 2])  # an interrupted first run
    (Path(paths["text_encoder"]) / "config.json").write_text("{")
    assert write_tiny_models(str(tmp_path)) == paths
    assert Path(paths["transformer"]).read_bytes() == whole
    load_transformer(paths["transformer"])
    assert json.loads((Path(paths["text_encoder"]) / "config.json").read_text())["d_model"] == 128


@pytest.mark.parametrize("case,fragment", [
    ("missing", "missing.json: no such file"), ("not json", "not a readable JSON workflow"),
    ("folder", "not a readable JSON workflow"), ("out is a file", "is a file; give a folder"),
    ("not an image", "LoadImage: Could not read the image"),
])
def test_bad_files_are_one_line_errors(tmp_path, cache, capsys, case, fragment):
    workflow, out = REPO / "workflows" / "infinity_style_basic.json", tmp_path / "out"
    if case == "missing":
        workflow = tmp_path / "missing.json"
    elif case == "not json":
        workflow = tmp_path / "w.json"
        workflow.write_text("{nodes: oops")
    elif case == "folder":
        workflow = tmp_path
    elif case == "out is a file":
        out.write_text("a file")
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "infinitystyle_style_waves.png").write_text("not a picture")
    assert rw.main([str(workflow), "--cache", str(cache), "--out", str(out), "--input", str(tmp_path / "inputs")]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0] and "Traceback" not in err


def test_link_objects_are_read_as_link_lists_and_malformed_entries_are_named(tmp_path, cache, capsys):
    data = json.loads((REPO / "workflows" / "infinity_text_to_image.json").read_text())
    fields = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
    objects = dict(data, links=[dict(zip(fields, link)) for link in data["links"]])  # as newer front ends save links
    assert rw.read_structure(objects) == [] and objects["links"] == data["links"]
    broken = json.loads(json.dumps(data))
    del broken["nodes"][1]["type"]
    broken["links"][0] = {"from": 1}
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    assert rw.main([str(tmp_path / "broken.json"), "--cache", str(cache), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"node 2 of {len(data['nodes'])} has no 'type'" in err and '{"from": 1}, not [id, from node' in err
    assert "Traceback" not in err
