"""`pytest -q` shows progress and the summary, nothing else: what a test finds it says through its
assertions, not in lines printed past pytest's capture."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_golden_free_run_prints_nothing_past_the_capture():
    # the free-running golden test used to print "[square_256] free run: all scales identical"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_golden.py",
                           "-k", "free_running and square"], cwd=REPO, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert done.returncode == 0, done.stdout[-2000:]
    progress, summary = lines[:-1], lines[-1]
    assert all(re.fullmatch(r"[.]+\s*\[\s*\d+%\]", line) for line in progress), lines
    assert re.fullmatch(r"\d+ passed, \d+ deselected in .*", summary), lines
