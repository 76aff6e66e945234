"""The memory plan's document and its traced VAE figures.

docs/memory.md holds the tables memory_plan.py makes, between its markers: they are compared
here, so the document and the formula cannot disagree (regenerate with `python -m
infinity_core.memory_plan --write docs/memory.md`)."""
import re
from pathlib import Path

import torch

from infinity_core import memory_plan
from infinity_core.live_bytes import peak_bytes
from infinity_core.memory_plan import BEGIN, END, generated_section, write_section

DOC = Path(__file__).resolve().parent.parent / "docs" / "memory.md"


def test_the_memory_document_holds_the_tables_the_plan_makes():
    text = DOC.read_text()
    assert text.count(BEGIN) == text.count(END) == 1
    section = text[text.index(BEGIN):text.index(END) + len(END)]
    assert section == generated_section(), \
        "docs/memory.md differs from memory_plan.py: run python -m infinity_core.memory_plan --write docs/memory.md"


def test_the_document_gives_sizes_in_gib_only():
    units = set(re.findall(r"\d\s*([KMGT]i?B)\b", DOC.read_text()))
    assert units <= {"GiB"}, f"docs/memory.md mixes units: {sorted(units)}"


def test_write_replaces_only_the_section(tmp_path):
    doc = tmp_path / "memory.md"
    doc.write_text(f"# head\n\n{BEGIN}\nstale table\n{END}\n\ntail\n")
    write_section(str(doc))
    assert doc.read_text() == f"# head\n\n{generated_section()}\n\ntail\n"


def test_the_plan_names_2b_and_8b_with_the_weights_the_loader_keeps():
    section = generated_section()
    for model in ("infinity_2b", "infinity_8b"):
        bf16 = memory_plan.weight_bytes(memory_plan.PRESETS[model], "bf16")
        assert f"| {model} | bf16 | {bf16 / 2 ** 30:.1f} |" in section


def test_live_bytes_follows_what_is_alive():
    mib = 2 ** 18  # float32 values in one MiB

    def steps():
        a = torch.empty(mib, device="meta")        # 1 MiB alive
        b = a * 2                                  # 2 MiB
        view = b[: mib // 2]                       # a view: nothing new
        del a                                      # 1 MiB
        b.add_(1)                                  # in place: nothing new
        c = torch.cat([view, view])                # 2 MiB
        return c
    assert peak_bytes(steps) == 2 * 2 ** 20
