"""The front end's stage strip: its data file matches the Python schedules, its JavaScript unit tests
pass (run here with Node's test runner, so the README's test command and CI run them), and the Python
step-text parser follows the table of cases the JavaScript parser is tested against too."""
from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CASES = json.loads((REPO / "tests" / "data" / "step_text_cases.json").read_text(encoding="utf-8"))
SIZE_CASES = json.loads((REPO / "tests" / "data" / "custom_size_cases.json").read_text(encoding="utf-8"))["cases"]


def _front_end():
    import run_workflow as rw
    rw.load_pack()
    return importlib.import_module(f"{rw.PACK_NAME}.nodes.front_end")


def test_schedule_table_for_the_front_end_is_written_from_the_python_schedules():
    front_end = _front_end()
    assert front_end.SCHEDULE_TABLE.read_text() == front_end.schedule_table_json(), (
        "web/data/schedules.json is stale: rewrite it with `python3 tests/test_front_end.py`")


def test_javascript_unit_tests_pass():
    node = shutil.which("node")
    assert node, "Node.js 20 or later is needed: the front end's unit tests run with `node --test`"
    tests = sorted(str(p) for p in (REPO / "tests" / "js").glob("*.test.mjs"))
    assert len(tests) >= 3, tests
    run = subprocess.run([node, "--test", *tests], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]


@pytest.mark.parametrize("case", CASES["parse"], ids=lambda c: repr(c["text"]))
def test_step_text_case(case):
    from infinity_core.errors import InfinityError
    from infinity_core.style import parse_steps
    if "error" in case:
        with pytest.raises(InfinityError) as caught:
            parse_steps(case["text"])
        assert str(caught.value) == case["error"]
    else:
        assert sorted(parse_steps(case["text"])) == case["steps"]


@pytest.mark.parametrize("case", CASES["stages"], ids=lambda c: f"{c['key']}|{c['fine']}|{c['budget']}")
def test_stage_case(case):
    """The message a run gives (the Stage Scheduler reads the texts, the sampler checks them against
    its schedule), or the role of each scale."""
    from infinity_core.errors import InfinityError
    from infinity_core.schedules import schedule
    from infinity_core.style import describe_schedule, read_stages
    plan = schedule(case["h_div_w"], case["budget"])
    try:
        stages = read_stages(case["key"], case["fine"], feature_init=case["feature_init"],
                             key_sharing=case["key_sharing"], query_sharing=case["query_sharing"])
        stages.validate(plan, depth=32)
    except InfinityError as exc:
        assert str(exc) == case.get("error"), case
    else:
        assert "error" not in case, case
        assert [role for _, _, role in describe_schedule(plan, stages)] == case["roles"]


@pytest.mark.parametrize("case", SIZE_CASES, ids=lambda c: repr(c["text"]))
def test_custom_size_case(case):
    """The sampler reads custom_size as width x height (the strip is tested against the same table)."""
    import run_workflow as rw
    pack = rw.load_pack().__name__
    sampling = importlib.import_module(f"{pack}.nodes.sampling")
    if "error" in case:
        with pytest.raises(importlib.import_module(f"{pack}.infinity_core.errors").InfinityError) as caught:
            sampling.make_schedule(sampling.CUSTOM, case["text"], "1M", None)
        assert str(caught.value) == case["error"]
    else:
        assert list(sampling.make_schedule(sampling.CUSTOM, case["text"], "1M", None).final_grid) == case["final_grid_hw"]


def test_a_huge_range_is_refused_before_it_expands():
    from infinity_core.errors import InfinityError
    from infinity_core.style import parse_steps
    tracemalloc.start()
    with pytest.raises(InfinityError, match="past the last scale"):
        parse_steps("0-2000000")  # a set of 2M steps would take ~100 MB
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000, f"parsing took {peak} bytes"


if __name__ == "__main__":  # rewrite web/data/schedules.json from the Python tables
    sys.path.insert(0, str(REPO))
    front_end = _front_end()
    front_end.SCHEDULE_TABLE.write_text(front_end.schedule_table_json())
    print(f"wrote {front_end.SCHEDULE_TABLE}")
