"""bench/gpu_check.py in its CPU mode (--device cpu --tiny), so the GPU check cannot rot: every part
runs on the tiny models, and what it reports about the CUDA path holds on the CPU already."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infinity_core.schedules import schedule

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--tiny",
                          "--out", str(out)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OUT": ""})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    files = list(out.glob("gpu_check_*-tiny_*.json"))
    assert len(files) == 1, run.stdout[-2000:]
    return json.loads(files[0].read_text())["parts"], run.stdout


def test_every_part_runs_and_the_table_names_each(report):
    parts, printed = report
    assert list(parts) == ["environment", "numerics", "2b", "batching", "lowbit", "8b"]
    assert all(part["status"] == "ok" for part in parts.values()), {k: v["status"] for k, v in parts.items()}
    assert all(f"## {name}" in printed for name in parts)


def test_the_golden_cases_pass_within_the_stated_tolerances(report):
    numerics = report[0]["numerics"]
    assert len(numerics["golden"]) == 4 and all(case["pass"] for case in numerics["golden"].values())
    assert all(case["bits_off_near_ties"] == 0 for case in numerics["golden"].values())
    assert numerics["stylized_vs_cpu_logits_relative"] == 0  # the CPU against itself


def test_one_host_read_per_sampled_row_and_step(report):
    """torch.multinomial reads one value back to check its input: one read per row that samples.
    A plain run samples one row; the tiny stylized run (fine steps 4-5) the content row too until
    it leaves after step 5. Style rows replay their bits. Anything more is a .item() or .cpu()
    that would stall a GPU at every step."""
    syncs = report[0]["environment"]["syncs"]
    steps = len(schedule(1.0, "0.06M"))
    assert syncs["plain"]["host_reads"] == [1] * steps
    assert syncs["stylized"]["host_reads"] == [2] * 6 + [1] * (steps - 6)


def test_the_kv_cache_moves_only_where_rows_leave(report):
    refits = report[0]["environment"]["kv_cache_refits"]
    assert refits == {"plain": 0, "stylized": 2}  # the style rows leave after step 3, the content row after 5


def test_self_attention_gets_the_fused_kernel_with_contiguous_last_dims(report):
    attention = report[0]["environment"]["attention"]
    assert len(attention) == len(schedule(1.0, "0.06M"))
    assert all(call["last_dim_contiguous"] and call["kernel"] == "flash" for call in attention)
