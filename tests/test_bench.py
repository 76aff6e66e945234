"""The benchmark scripts as documented: bench/README.md's synopsis lines name exactly each script's
options, and bench_lowvram reports each run as it ends (the runs take minutes)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SYNOPSIS = re.compile(r"^python3 (bench/bench_\w+\.py) (.*)$", re.M)


def _options(text: str) -> set[str]:
    return set(re.findall(r"--[a-z][a-z-]*", text)) - {"--help"}


def test_the_readme_synopsis_names_each_scripts_options():
    lines = SYNOPSIS.findall((REPO / "bench" / "README.md").read_text())
    assert sorted(script for script, _ in lines) == sorted(f"bench/{p.name}" for p in (REPO / "bench").glob("bench_*.py"))
    for script, documented in lines:
        usage = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert usage.returncode == 0, usage.stderr
        options = usage.stdout.split("\noptions:")[1]
        assert _options(documented) == _options(options), script
        for entry in re.split(r"\n(?=  -)", options.strip("\n")):  # each option explains itself
            name, _, rest = entry.strip().partition(" ")
            explained = re.sub(r"^[A-Z_]+|^\{[^}]*\}", "", rest.strip()).strip()
            assert explained, f"{script}: no help for {name}"


def test_bench_lowvram_says_each_run_as_it_ends(monkeypatch, capsys):
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import bench_lowvram
    finally:
        sys.path.remove(str(REPO / "bench"))
    order, said = [], []

    def measure(path, option, config, budget, threads):
        """In place of a measured run in a child process: what was said so far is taken as it stands."""
        said.append(capsys.readouterr().err)
        order.append(option)
        return {"peak": 2 ** 20 * len(order), "weights": 1, "seconds": 1.5, "others": 0.0}
    monkeypatch.setattr(bench_lowvram, "write_files", lambda folder, config: dict.fromkeys(bench_lowvram.OPTIONS, "f"))
    monkeypatch.setattr(bench_lowvram, "measure", measure)
    bench_lowvram.main(["--repeats", "2", "--threads", "1"])
    said.append(capsys.readouterr().err)
    assert said[0].startswith("writing the tiny model") and order == [*bench_lowvram.OPTIONS, *bench_lowvram.OPTIONS[::-1]]
    for i, option in enumerate(order):  # each run is reported before the next one starts
        assert said[i + 1] == f"[{i + 1}/8] {option}: 1.5 s, peak {i + 1}.0 MiB\n"


@pytest.fixture(autouse=True)
def _no_module_left(monkeypatch):
    monkeypatch.delitem(sys.modules, "bench_lowvram", raising=False)
