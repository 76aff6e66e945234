"""What the front end's stage strip needs to know from the Python side, as the JSON file it loads:
the scale schedule of every aspect template and pixel budget, and the sampler's aspect choices.
Python is the one source; tests/test_front_end.py checks the file and rewrites it when run as a script."""
from __future__ import annotations

import json
from pathlib import Path

from ..infinity_core.schedules import PIXEL_BUDGETS, TEMPLATE_GRIDS
from .sampling import ASPECTS, CUSTOM, FROM_CONTENT

SCHEDULE_TABLE = Path(__file__).resolve().parents[1] / "web" / "data" / "schedules.json"


def schedule_table() -> dict:
    return {
        "about": "Written from infinity_core/schedules.py and nodes/sampling.py by tests/test_front_end.py; "
                 "do not edit by hand.",
        "pixel_budgets": PIXEL_BUDGETS,  # budget -> scales it runs (the first n of the 1M schedule)
        "templates": [{"h_div_w": t, "scales": [list(hw) for hw in grids]} for t, grids in TEMPLATE_GRIDS.items()],
        "aspects": ASPECTS,  # the sampler's aspect choices -> h/w
        "custom_aspect": CUSTOM,
        "content_aspect": FROM_CONTENT,
    }


def schedule_table_json() -> str:
    return json.dumps(schedule_table(), indent=1) + "\n"
