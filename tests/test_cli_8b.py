"""`python -m infinity_core` with Infinity-8B's files under their released names (tiny stand-ins)."""
import os
import shutil

from PIL import Image

import infinity_core.cli as cli
from infinity_core.cli import generate as generate_command
from infinity_core.tiny import write_tiny_8b_models


def test_8b_folder_is_found_with_its_own_vae_and_tau(tmp_path, monkeypatch):
    tiny = write_tiny_8b_models(str(tmp_path / "tiny"))
    models = tmp_path / "models"
    shutil.copytree(tiny["transformer"], models / "infinity" / "infinity_8b_weights")
    os.makedirs(models / "vae")
    shutil.copy(tiny["vae"], models / "vae" / "infinity_vae_d56_f8_14_patchify.pth")
    shutil.copy(tiny["vae"].replace("tiny-random-vae-8b-patchify", "tiny-random-vae"),
                models / "vae" / "infinity_vae_d32reg.pth")  # the 2B VAE beside it must not be picked
    shutil.copytree(tiny["text_encoder"], models / "text_encoders" / "flan-t5-xl")
    used = []
    real_generate = generate_command.generate
    monkeypatch.setattr(generate_command, "generate", lambda *a: used.append(a[4]) or real_generate(*a))
    out = tmp_path / "cat.png"
    assert cli.main(["generate", "--models", str(models), "--prompt", "a cat", "--pn", "0.06M", "--out", str(out)]) == 0
    assert Image.open(out).size == (256, 256) and used[0].tau == 1.0
    assert cli.main(["generate", "--models", str(models), "--prompt", "a cat", "--pn", "0.06M", "--tau", "0.7",
                     "--out", str(out)]) == 0
    assert used[1].tau == 0.7
