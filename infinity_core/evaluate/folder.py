"""The run folder on disk: atomic writes, run.json, and the score table.

The table is scores.csv. A process that makes one share of the cells (a torchrun rank, a
--shard K/N job) appends its rows to its own part file, shards/K-of-N.csv, so no two processes
ever write one file; the process that writes the report merges every part into scores.csv, in
the plan's order, and removes the parts. A cell is done when its row is in any of these files.
Every row is appended and synced on its own, so a process that dies loses at most the row it
was writing: a cut-off last line is dropped by its writer when it starts again, and ignored by
every reader.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
from dataclasses import asdict

from ..errors import InfinityError

COLUMNS = ("configuration", "prompt_id", "prompt", "style_id", "style", "seed", "generation_prompt", "image",
           "s_txt_content", "s_txt_prompt", "s_img", "seconds")
TIMING_COLUMNS = ("seconds",)
CSV_NAME, MANIFEST_NAME, PARTS_DIR = "scores.csv", "run.json", "shards"
_PART = re.compile(r"([0-9]+)-of-([0-9]+)\.csv")


def key_of(row: dict) -> tuple[str, str, str, str]:
    return row["configuration"], row["prompt_id"], row["style_id"], row["seed"]


# --- atomic writes --------------------------------------------------------------------------------

def write_bytes_atomic(path: str, data: bytes) -> None:
    """A temporary file of this process, then a rename: readers see the old file or the new one."""
    tmp = f"{path}.{os.getpid()}.partial"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


# --- run.json -------------------------------------------------------------------------------------

def check_manifest(out: str, settings, configs: list, sources: dict) -> dict:
    """The folder's run.json, extended with these configurations, after checking that an earlier
    run in the same folder made its images the same way. Written only when it changes, so the
    processes of one launch starting together all find the same file."""
    path = os.path.join(out, MANIFEST_NAME)
    wanted = {"settings": asdict(settings), "models": sources, "configurations": {}}
    before = None
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                before = json.load(f)
            wanted["configurations"] = dict(before["configurations"])
            earlier_parts = {part: dict(before[part]) for part in ("settings", "models")}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InfinityError(f"{path} is not a run record this command wrote ({exc}); use another --out "
                                "folder.") from exc
        for part, earlier in earlier_parts.items():
            changed = [k for k in wanted[part] if earlier.get(k) != wanted[part][k]]
            if changed:
                k = changed[0]
                raise InfinityError(f"{out} holds a run made with {k} = {earlier.get(k)!r}, not {wanted[part][k]!r}; "
                                    "resuming would mix the two. Use the same settings, or another --out folder.")
    for config in configs:
        earlier = wanted["configurations"].get(config.name)
        if earlier is not None and earlier != config.as_dict():
            raise InfinityError(f"{out} already holds a configuration named {config.name!r} with other stage "
                                "settings; give this one another name, or use another --out folder.")
        wanted["configurations"][config.name] = config.as_dict()
    if wanted != before:
        os.makedirs(out, exist_ok=True)
        write_text_atomic(path, json.dumps(wanted, indent=2) + "\n")
    return wanted


# --- the score table ------------------------------------------------------------------------------

def part_path(out: str, index: int, count: int) -> str:
    """The part file of share `index` (0-based) of `count`."""
    return os.path.join(out, PARTS_DIR, f"{index + 1}-of-{count}.csv")


def part_files(out: str) -> list[str]:
    return sorted(p for p in glob.glob(os.path.join(out, PARTS_DIR, "*.csv")) if _PART.fullmatch(os.path.basename(p)))


def part_counts(out: str) -> set[int]:
    """The share counts N of the part files present (K-of-N.csv)."""
    return {int(_PART.fullmatch(os.path.basename(p))[2]) for p in part_files(out)}


def _complete(data: bytes) -> bytes:
    """The data up to its last whole line: a line being written (or cut off by a crash) is not read."""
    return data[:data.rfind(b"\n") + 1]


def read_table(path: str) -> list[dict]:
    """The whole rows of a score table file; [] when there is no file."""
    try:
        with open(path, "rb") as f:
            data = _complete(f.read())
    except FileNotFoundError:
        return []
    if not data:
        return []
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise InfinityError(f"{path} is not this command's score table (its header differs: an earlier version "
                            "wrote it, or another program); use another --out folder.")
    return list(reader)


def recorded(out: str) -> list[dict]:
    """Every recorded row: scores.csv's, then each part file's; the first row of a cell wins."""
    rows, seen = [], set()
    for path in [os.path.join(out, CSV_NAME), *part_files(out)]:
        for row in read_table(path):
            if key_of(row) not in seen:
                seen.add(key_of(row))
                rows.append(row)
    return rows


class TableWriter:
    """Appends rows to one table file, owned by this process alone. Opening it drops a line a
    crash cut off and writes the header into a new file."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        whole = _complete(data)
        if not whole:
            whole = (",".join(COLUMNS) + "\n").encode("utf-8")
        if whole != data:
            write_bytes_atomic(path, whole)
        read_table(path)  # refuses a file with another header

    def append(self, row: dict) -> None:
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow([row[c] for c in COLUMNS])
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            f.write(line.getvalue())
            f.flush()
            os.fsync(f.fileno())


def merge(out: str, order: list[tuple]) -> list[dict]:
    """Write every recorded row into scores.csv, the cells of `order` first and in that order
    (then any other cells an earlier run recorded), remove the part files; return the rows. Run
    it only while no other process of the run is writing."""
    rows = recorded(out)
    rank = {key: i for i, key in enumerate(order)}
    rows.sort(key=lambda r: rank.get(key_of(r), len(rank)))  # stable: other cells keep their order
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([r[c] for c in COLUMNS] for r in rows)
    write_text_atomic(os.path.join(out, CSV_NAME), text.getvalue())
    for path in part_files(out):
        os.remove(path)
    try:
        os.rmdir(os.path.join(out, PARTS_DIR))
    except OSError:
        pass  # absent, or holding something that is not ours
    return rows
