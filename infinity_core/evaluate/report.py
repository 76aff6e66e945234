"""What a run shows: summary.md (every setting used; per configuration the mean and 95 % interval
of both S_txt readings and of S_img, seconds per image, and the paper's Table 2 row beside the
configuration with the same stages), scatter.png (each S_txt reading against S_img, one panel
each, one colour per configuration, the paper's rows as crosses) and sheet_<configuration>.png
(a few prompts x styles)."""
from __future__ import annotations

import io
import os
import statistics

from PIL import Image, ImageDraw, ImageFont

from .folder import write_bytes_atomic, write_text_atomic
from .protocol import PAPER_SECONDS, PAPER_TABLE2, TABLE2, Configuration, Prompt, Style, paper_row
from .settings import S_TXT, S_TXT_COLUMNS
from .stats import mean_interval

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
UNMATCHED = (0, 0, 0)  # a paper row no configuration of the run matches


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def _save_png(image: Image.Image, path: str) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())


def _by_config(rows: list[dict], configs: list[str]) -> dict[str, list[dict]]:
    return {name: [r for r in rows if r["configuration"] == name] for name in configs}


def readings(headline: str) -> list[str]:
    """The S_txt readings, the headline first."""
    return [headline] + [name for name in S_TXT if name != headline]


def _label(reading: str, headline: str) -> str:
    return f"S_txt {reading}" + (" (headline)" if reading == headline else "")


def _paper_cell(config: Configuration) -> str:
    row = paper_row(config)
    if row is None:
        return "-"
    txt, img = PAPER_TABLE2[row]
    return f"{txt:.3f} / {img:.3f} (row {row}" + (f"; Table 1: {PAPER_SECONDS:.2f} s)" if row == "d" else ")")


def summary_markdown(rows: list[dict], configs: list[Configuration], headline: str,
                     settings: list[tuple[str, str]]) -> str:
    """`settings`: (setting, value) pairs, every one the run used, in the order to show them."""
    order = readings(headline)
    lines = ["# Evaluation summary", "", "## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in settings]
    lines += ["", "## Scores", "",
              "S_txt = cosine(CLIP image embedding of the output, CLIP text embedding of a text), read two ways: "
              + "; ".join(f"**{name}**: {S_TXT[name]}" for name in order)
              + f". The headline reading is **{headline}** (--s-txt). S_img = cosine(CLIP image embeddings of the "
              "output and of the style image). Intervals: 95 % Student t interval of the mean over images. "
              "Seconds: generation of one image (prompt encoding, sampling, decoding), mean and median. Paper: "
              "the paper's Table 2 row with the same stage settings (S_txt / S_img).", "",
              "| configuration | stages | images | " + " | ".join(f"{_label(r, headline)} [95 % interval]" for r in order)
              + " | S_img [95 % interval] | seconds/image mean (median) | paper, Table 2 |",
              "|---|---|---|---|---|---|---|---|"]
    columns = [S_TXT_COLUMNS[r] for r in order] + ["s_img"]
    names = [c.name for c in configs]
    for config in configs:
        rows_of = _by_config(rows, names)[config.name]
        if not rows_of:
            continue
        cells = []
        for column in columns:
            mean, low, high = mean_interval([float(r[column]) for r in rows_of])
            cells.append(f"{mean:.4f} [{low:.4f}, {high:.4f}]")
        seconds = [float(r["seconds"]) for r in rows_of]
        lines.append(f"| {config.name} | {config.label}: {config.describe()} | {len(rows_of)} | {' | '.join(cells)} "
                     f"| {statistics.fmean(seconds):.2f} ({statistics.median(seconds):.2f}) | {_paper_cell(config)} |")
    lines += _paired_differences(rows, names, order, headline)
    matched = [f"{paper_row(c)} ({c.name})" for c in configs if paper_row(c)]
    rows_text = "; ".join(f"({name}) {TABLE2[name].label} {txt:.3f} / {img:.3f}"
                          for name, (txt, img) in PAPER_TABLE2.items())
    lines += ["", "## The paper", "",
              f"Table 2 (FineStyle protocol, 1M), S_txt / S_img: {rows_text}. Row d is also Table 1's row, "
              f"{PAPER_SECONDS:.2f} s per image on an RTX A6000. The paper names neither its CLIP nor the text its "
              "S_txt is measured against. "
              + (f"Rows beside this run's configurations: {', '.join(matched)}. " if matched else
                 "No configuration of this run has the stage settings of a Table 2 row. ")
              + "Only a run with the released weights, the FineStyle prompts and styles, the paper's settings "
              "(--preset paper) and the paper's CLIP is comparable with them.", ""]
    return "\n".join(lines)


def _paired_differences(rows: list[dict], configs: list[str], order: list[str], headline: str) -> list[str]:
    """Each configuration minus the first, image by image on the same prompt, style and seed: the
    draws are shared, so this interval is much narrower than the two separate ones."""
    by_config = {name: {(r["prompt_id"], r["style_id"], r["seed"]): r for r in rs}
                 for name, rs in _by_config(rows, configs).items()}
    reference = configs[0]
    columns = [(S_TXT_COLUMNS[r], _label(r, headline)) for r in order] + [("s_img", "S_img")]
    lines = ["", f"Paired differences from {reference} (same prompt, style and seed; 95 % interval):", "",
             "| configuration | pairs | " + " | ".join(f"{label} - {reference}" for _, label in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for name in configs[1:]:
        pairs = [(r, by_config[reference][key]) for key, r in by_config[name].items() if key in by_config[reference]]
        if not pairs:
            continue
        cells = []
        for column, _ in columns:
            mean, low, high = mean_interval([float(a[column]) - float(b[column]) for a, b in pairs])
            cells.append(f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]")
        lines.append(f"| {name} | {len(pairs)} | {' | '.join(cells)} |")
    return lines if len(lines) > 5 else []


# --- scatter.png ----------------------------------------------------------------------------------

class Panel:
    """One S_txt reading (x) against S_img (y) inside `box` (left, top, right, bottom) of the picture."""

    def __init__(self, reading: str, box: tuple[int, int, int, int], xs: list[float], ys: list[float]):
        self.reading, self.column, self.box = reading, S_TXT_COLUMNS[reading], box
        self.x0, self.x1 = _span(xs)
        self.y0, self.y1 = _span(ys)

    def at(self, x: float, y: float) -> tuple[float, float]:
        left, top, right, bottom = self.box
        return (left + (x - self.x0) / (self.x1 - self.x0) * (right - left),
                bottom - (y - self.y0) / (self.y1 - self.y0) * (bottom - top))


_PANEL_W, _PANEL_H, _GAP, _LEFT, _TOP, _LEGEND, _LINE = 420, 430, 80, 70, 50, 230, 16


def layout(rows: list[dict], configs: list[str], headline: str) -> list[Panel]:
    """The panels of scatter.png, the headline reading first; S_img shares one scale."""
    kept = [r for r in rows if r["configuration"] in configs]
    ys = [float(r["s_img"]) for r in kept] + [img for _, img in PAPER_TABLE2.values()]
    panels = []
    for i, reading in enumerate(readings(headline)):
        left = _LEFT + i * (_PANEL_W + _GAP)
        xs = [float(r[S_TXT_COLUMNS[reading]]) for r in kept] + [txt for txt, _ in PAPER_TABLE2.values()]
        panels.append(Panel(reading, (left, _TOP, left + _PANEL_W, _TOP + _PANEL_H), xs, ys))
    return panels


def scatter(rows: list[dict], configs: list[Configuration], headline: str, caption: list[str]) -> Image.Image:
    """Each S_txt reading (x) against S_img (y): a dot per image, a ringed disc per configuration's
    mean, and a cross per paper Table 2 row, in the colour of the configuration with its stages
    (black when none has them). `caption`: lines under the panels (the settings)."""
    names = [c.name for c in configs]
    panels = layout(rows, names, headline)
    width = panels[-1].box[2] + _LEGEND
    height = _TOP + _PANEL_H + 60 + _LINE * len(caption)
    picture = Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(picture)
    small, label = _font(12), _font(14)
    colour = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(names)}
    matched = {paper_row(c): colour[c.name] for c in configs if paper_row(c)}
    for panel in panels:
        _axes(pen, panel, _label(panel.reading, headline), small, label)
        for name, rows_of in _by_config(rows, names).items():
            points = [(float(r[panel.column]), float(r["s_img"])) for r in rows_of]
            for x, y in points:
                px, py = panel.at(x, y)
                pen.ellipse([px - 2.5, py - 2.5, px + 2.5, py + 2.5], fill=colour[name])
            if points:
                px, py = panel.at(statistics.fmean(x for x, _ in points), statistics.fmean(y for _, y in points))
                pen.ellipse([px - 7, py - 7, px + 7, py + 7], fill=colour[name], outline=(0, 0, 0), width=2)
        for row, (txt, img) in PAPER_TABLE2.items():
            px, py = panel.at(txt, img)
            ink = matched.get(row, UNMATCHED)
            pen.line([px - 6, py - 6, px + 6, py + 6], fill=ink, width=3)
            pen.line([px - 6, py + 6, px + 6, py - 6], fill=ink, width=3)
            pen.text((px + 8, py - 8), row, fill=ink, font=small)
    legend_x = panels[-1].box[2] + 20
    for i, name in enumerate(names):
        ly = _TOP + 10 + 22 * i
        pen.ellipse([legend_x, ly - 6, legend_x + 12, ly + 6], fill=colour[name], outline=(0, 0, 0))
        count = sum(1 for r in rows if r["configuration"] == name)
        pen.text((legend_x + 20, ly), f"{name} (n={count})", fill=(0, 0, 0), font=label, anchor="lm")
    ly = _TOP + 10 + 22 * len(names)
    pen.line([legend_x, ly - 6, legend_x + 12, ly + 6], fill=(0, 0, 0), width=2)
    pen.line([legend_x, ly + 6, legend_x + 12, ly - 6], fill=(0, 0, 0), width=2)
    pen.text((legend_x + 20, ly), "paper, Table 2 a-d", fill=(0, 0, 0), font=label, anchor="lm")
    pen.text((legend_x, ly + 20), "coloured: the run's configuration", fill=(90, 90, 90), font=small)
    pen.text((legend_x, ly + 36), "with that row's stages", fill=(90, 90, 90), font=small)
    pen.text((legend_x, ly + 58), "big disc: mean", fill=(90, 90, 90), font=small)
    for i, text in enumerate(caption):
        pen.text((_LEFT, _TOP + _PANEL_H + 50 + _LINE * i), text, fill=(0, 0, 0), font=small)
    return picture


def _axes(pen, panel: Panel, title: str, small, label) -> None:
    left, top, right, bottom = panel.box
    pen.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    for i in range(5):
        tx, ty = panel.x0 + (panel.x1 - panel.x0) * i / 4, panel.y0 + (panel.y1 - panel.y0) * i / 4
        px, _ = panel.at(tx, panel.y0)
        _, py = panel.at(panel.x0, ty)
        pen.line([px, bottom, px, bottom + 5], fill=(0, 0, 0))
        pen.text((px, bottom + 8), f"{tx:.3f}", fill=(0, 0, 0), font=small, anchor="mt")
        pen.line([left - 5, py, left, py], fill=(0, 0, 0))
        pen.text((left - 8, py), f"{ty:.3f}", fill=(0, 0, 0), font=small, anchor="rm")
    pen.text(((left + right) / 2, bottom + 32), title, fill=(0, 0, 0), font=label, anchor="mm")
    pen.text((left, top - 22), "S_img (style fidelity)", fill=(0, 0, 0), font=label)


def _span(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = max((high - low) * 0.08, 0.01)
    return low - pad, high + pad


# --- contact sheets -------------------------------------------------------------------------------

def contact_sheet(out: str, rows: list[dict], config: str, prompts: list[Prompt], styles: list[Style],
                  cell: int = 160) -> Image.Image:
    """Rows = prompts, columns = styles (their reference images on top); each cell is the
    configuration's image of the pair (first sample), grey where there is none."""
    images = {}
    for r in rows:
        if r["configuration"] == config:
            images.setdefault((r["prompt_id"], r["style_id"]), r["image"])
    label_w, head = 200, cell + 24
    sheet = Image.new("RGB", (label_w + cell * len(styles), head + cell * len(prompts)), "white")
    pen = ImageDraw.Draw(sheet)
    font = _font(13)
    pen.text((8, 8), f"configuration {config}", fill=(0, 0, 0), font=_font(15))
    for j, style in enumerate(styles):
        _paste(sheet, style.image, (label_w + j * cell, 0), cell)
        pen.text((label_w + j * cell + 4, cell + 4), _fit(style.text, cell - 8, font), fill=(0, 0, 0), font=font)
    for i, prompt in enumerate(prompts):
        y = head + i * cell
        pen.text((8, y + cell // 2), _fit(prompt.content, label_w - 16, font), fill=(0, 0, 0), font=font, anchor="lm")
        for j, style in enumerate(styles):
            path = os.path.join(out, images.get((prompt.id, style.id), "-"))
            if os.path.isfile(path):
                _paste(sheet, path, (label_w + j * cell, y), cell)
            else:
                pen.rectangle([label_w + j * cell + 2, y + 2, label_w + (j + 1) * cell - 2, y + cell - 2], fill=(220, 220, 220))
    return sheet


def _paste(sheet: Image.Image, path: str, at: tuple[int, int], cell: int) -> None:
    with Image.open(path) as img:
        thumb = img.convert("RGB")
    thumb.thumbnail((cell - 4, cell - 4))
    sheet.paste(thumb, (at[0] + (cell - thumb.width) // 2, at[1] + (cell - thumb.height) // 2))


def _fit(text: str, width: int, font) -> str:
    while text and font.getlength(text) > width:
        text = text[:-2] + "…" if len(text) > 1 else ""
    return text


def write_reports(out: str, rows: list[dict], configs: list[Configuration], prompts: list[Prompt],
                  styles: list[Style], headline: str, settings: list[tuple[str, str]],
                  sheet: tuple[int, int] = (4, 4)) -> list[str]:
    """Write summary.md, scatter.png and one sheet per configuration into `out`; return their paths."""
    paths = [os.path.join(out, "summary.md"), os.path.join(out, "scatter.png")]
    write_text_atomic(paths[0], summary_markdown(rows, configs, headline, settings))
    caption = _caption(settings)
    _save_png(scatter(rows, configs, headline, caption), paths[1])
    for config in configs:
        paths.append(os.path.join(out, f"sheet_{config.name}.png"))
        _save_png(contact_sheet(out, rows, config.name, prompts[:sheet[0]], styles[:sheet[1]]), paths[-1])
    return paths


def _caption(settings: list[tuple[str, str]], width: int = 150) -> list[str]:
    """The settings as lines of at most `width` characters."""
    lines, line = [], ""
    for name, value in settings:
        item = f"{name} {value}".replace("`", "")
        if line and len(line) + len(item) + 2 > width:
            lines.append(line)
            line = ""
        line = f"{line}; {item}" if line else item
    return lines + [line] if line else lines
