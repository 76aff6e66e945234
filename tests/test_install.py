"""Installing the pack as the README says: torch left to ComfyUI (and installed by CI and the
standalone set-up), the registry fields, the licence, what git ignores, and the README's claims that
the code can check (its install section, the GGUF table, the paper, its pictures and links)."""
import re
import subprocess
from pathlib import Path

from infinity_core.cli.gguf import K_QUANTS
from infinity_core.weights import ggml
from infinity_core.weights.gguf_file import QUANTIZABLE

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
PYPROJECT = (REPO / "pyproject.toml").read_text(encoding="utf-8")


def _value(key: str) -> str:
    """A `key = "value"` of pyproject.toml (read by hand: tomllib is not in Python 3.10)."""
    match = re.search(rf'^{re.escape(key)} = "([^"]*)"', PYPROJECT, re.M)
    assert match, f"pyproject.toml has no {key}"
    return match.group(1)


def _section(title: str) -> str:
    """A `## title` section of the README, up to the next `## `."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"the README has no section {title!r}"
    return match.group(1)


def _requirements() -> list[str]:
    lines = (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_torch_is_left_to_comfyui_and_installed_by_ci():
    assert not [r for r in _requirements() if re.match(r"torch\b", r)]
    dependencies = re.findall(r'^    "([^"]+)",$', PYPROJECT.split("dependencies = [")[1].split("]")[0], re.M)
    assert dependencies and not [d for d in dependencies if re.match(r"torch\b", d)]
    assert set(dependencies) <= set(_requirements())
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"pip install .*torch==\d+\.\d+\.\d+ -r requirements\.txt", ci)


def test_the_standalone_set_up_makes_a_venv_and_gets_the_cpu_torch_without_a_gpu():
    setup = _section("Without ComfyUI")
    version = re.search(r"torch==(\d+\.\d+\.\d+)", (REPO / ".ci" / "run").read_text()).group(1)
    venv, cpu, requirements = (setup.find(s) for s in (
        "python3 -m venv .venv", f"pip install torch=={version} --index-url https://download.pytorch.org/whl/cpu",
        "pip install -r requirements.txt"))
    assert -1 < venv < cpu < requirements, "a venv, then the CPU torch, then the requirements"


def test_the_licence_is_mit_as_pyproject_says():
    assert (REPO / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n")
    assert 'license = { text = "MIT" }' in PYPROJECT


def test_the_registry_fields_and_the_install_section_agree():
    repository, name = _value("Repository"), _value("name")
    minimum = _value("requires-comfyui")
    assert repository.startswith("https://github.com/") and _value("PublisherId") and _value("DisplayName")
    assert _value("Issues").startswith(repository) and _value("Documentation").startswith(repository)
    install = _section("Install")
    assert f"comfy node install {name}" in install and "ComfyUI-Manager" in install
    assert f"git clone {repository} InfinityStyle" in install
    assert re.fullmatch(r">=\d+\.\d+\.\d+", minimum) and f"ComfyUI {minimum[2:]} or later" in install
    assert "restart ComfyUI" in install


def test_git_ignores_what_the_documented_commands_leave_behind(tmp_path):
    documents = README + "".join(p.read_text(encoding="utf-8") for p in (REPO / "docs").glob("*.md"))
    outputs = {out for out in re.findall(r"--out (\S+)", documents)  # folders in the checkout
               if "." not in Path(out).name and not Path(out).is_absolute()}
    assert "output" in outputs and any(out.startswith("runs/") for out in outputs)
    left = [f"{out}/x.png" for out in outputs] + [".venv/bin/python", "infinitystyle.egg-info/PKG-INFO",
                                                   "build/lib/infinity_core/__init__.py", "models/vae/x.pth"]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *left], cwd=REPO, capture_output=True, text=True)
    assert sorted(ignored.stdout.split()) == sorted(left), ignored.stderr


def test_the_readme_gguf_table_says_where_each_type_is_decoded():
    table = dict(re.findall(r"^\| ([A-Z0-9_, ]+|other types) \| (.*) \|$", _section("Low VRAM: GGUF and fp8"), re.M))
    where = {}
    for types, cells in table.items():
        without, with_gguf = (c.strip() for c in cells.split(" | "))
        for name in types.split(", "):
            where[name] = (without.split(",")[0], with_gguf.split(",")[0])
    for qtype in ggml.DECODERS:  # decoded in torch by the pack, so on the GPU with or without ComfyUI-GGUF
        assert where[ggml.type_name(qtype)] == ("on the GPU", "on the GPU")
    for name in ("Q3_K", "Q2_K", "IQ4_NL", "IQ4_XS"):  # ComfyUI-GGUF decodes these in torch, the pack does not
        assert where[name] == ("on the CPU", "on the GPU")


def test_the_readme_recommends_only_gguf_files_one_can_make_here_or_download():
    low_vram = _section("Low VRAM: GGUF and fp8")
    made = re.findall(r"python -m infinity_core gguf \S+ \S+ (\S+)", low_vram)
    listed = re.search(r"with the type (.*?) \(smaller", low_vram, re.S).group(1)
    assert made and set(made) <= set(QUANTIZABLE)
    assert set(re.findall(r"`(\w+)`", listed)) <= set(QUANTIZABLE)
    assert all(k in low_vram for k in K_QUANTS) and "cannot be made here" in low_vram
    assert "infinity_2b_reg_Q8_0.gguf" in low_vram  # the download


def test_the_readme_names_the_paper_and_shows_only_files_that_exist():
    assert "*A Training-Free Style-Personalization via Scale-wise Autoregressive Model*" in README
    assert "arXiv 2507.04482" in _section("Credits")
    for target in re.findall(r"\]\(([^)#]+)\)|src=\"([^\"]+)\"", README):
        path = next(t for t in target if t)
        if not path.startswith("http"):
            assert (REPO / path).exists(), path
