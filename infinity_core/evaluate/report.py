"""What a run shows: summary.md (per configuration: mean and 95 % interval of S_txt and S_img,
seconds per image), scatter.png (S_txt against S_img, one colour per configuration) and
sheet_<configuration>.png (a few prompts x styles)."""
from __future__ import annotations

import io
import os
import statistics

from PIL import Image, ImageDraw, ImageFont

from .protocol import Prompt, Style
from .run import write_bytes_atomic, write_text_atomic
from .stats import mean_interval

# The paper's Table 1 row for its method (FineStyle protocol): S_txt, S_img, seconds per image.
PAPER_OURS = (0.330, 0.603, 6.44)
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


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


def summary_markdown(rows: list[dict], configs: dict[str, str], clip_name: str) -> str:
    """`configs`: name -> description, in table order."""
    lines = ["# Evaluation summary", "",
             f"CLIP: `{clip_name}`. S_txt = cosine(CLIP image embedding of the output, CLIP text embedding of "
             "the content prompt); S_img = cosine(CLIP image embeddings of the output and of the style image). "
             "Intervals: 95 % Student t interval of the mean over images. Seconds: generation of one image "
             "(prompt encoding, sampling, decoding), mean and median.", "",
             "| configuration | stages | images | S_txt mean [95 % interval] | S_img mean [95 % interval] "
             "| seconds/image mean (median) |",
             "|---|---|---|---|---|---|"]
    for name, rows_of in _by_config(rows, list(configs)).items():
        if not rows_of:
            continue
        cells = []
        for column in ("s_txt", "s_img"):
            mean, low, high = mean_interval([float(r[column]) for r in rows_of])
            cells.append(f"{mean:.4f} [{low:.4f}, {high:.4f}]")
        seconds = [float(r["seconds"]) for r in rows_of]
        lines.append(f"| {name} | {configs[name]} | {len(rows_of)} | {cells[0]} | {cells[1]} "
                     f"| {statistics.fmean(seconds):.2f} ({statistics.median(seconds):.2f}) |")
    lines += _paired_differences(rows, list(configs))
    txt, img, sec = PAPER_OURS
    lines += ["", f"The paper (Table 1, its method, the full row d): S_txt {txt:.3f}, S_img {img:.3f}, "
              f"{sec:.2f} s per image. Only a run with the released weights, the FineStyle prompts and styles "
              "and the paper's CLIP is comparable with it.", ""]
    return "\n".join(lines)


def _paired_differences(rows: list[dict], configs: list[str]) -> list[str]:
    """Each configuration minus the first, image by image on the same prompt, style and seed: the
    draws are shared, so this interval is much narrower than the two separate ones."""
    by_config = {name: {(r["prompt_id"], r["style_id"], r["seed"]): r for r in rs}
                 for name, rs in _by_config(rows, configs).items()}
    reference = configs[0]
    lines = ["", f"Paired differences from {reference} (same prompt, style and seed; 95 % interval):", "",
             f"| configuration | pairs | S_txt - S_txt({reference}) | S_img - S_img({reference}) |", "|---|---|---|---|"]
    for name in configs[1:]:
        pairs = [(r, by_config[reference][key]) for key, r in by_config[name].items() if key in by_config[reference]]
        if not pairs:
            continue
        cells = []
        for column in ("s_txt", "s_img"):
            mean, low, high = mean_interval([float(a[column]) - float(b[column]) for a, b in pairs])
            cells.append(f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]")
        lines.append(f"| {name} | {len(pairs)} | {cells[0]} | {cells[1]} |")
    return lines if len(lines) > 5 else []


def scatter(rows: list[dict], configs: list[str], size=(760, 560)) -> Image.Image:
    """S_txt (x) against S_img (y): a dot per image, a ringed disc per configuration's mean, and a
    cross at the paper's reading for its method."""
    width, height = size
    left, right, top, bottom = 70, 190, 30, 60
    points = {name: [(float(r["s_txt"]), float(r["s_img"])) for r in rs] for name, rs in _by_config(rows, configs).items()}
    xs = [x for ps in points.values() for x, _ in ps] + [PAPER_OURS[0]]
    ys = [y for ps in points.values() for _, y in ps] + [PAPER_OURS[1]]
    x0, x1 = _span(xs)
    y0, y1 = _span(ys)

    def at(x, y):
        return (left + (x - x0) / (x1 - x0) * (width - left - right),
                height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom))

    picture = Image.new("RGB", size, "white")
    pen = ImageDraw.Draw(picture)
    small, label = _font(12), _font(14)
    pen.rectangle([left, top, width - right, height - bottom], outline=(0, 0, 0))
    for i in range(5):
        tx, ty = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        px, _ = at(tx, y0)
        _, py = at(x0, ty)
        pen.line([px, height - bottom, px, height - bottom + 5], fill=(0, 0, 0))
        pen.text((px, height - bottom + 8), f"{tx:.3f}", fill=(0, 0, 0), font=small, anchor="mt")
        pen.line([left - 5, py, left, py], fill=(0, 0, 0))
        pen.text((left - 8, py), f"{ty:.3f}", fill=(0, 0, 0), font=small, anchor="rm")
    pen.text(((left + width - right) / 2, height - 18), "S_txt (prompt fidelity)", fill=(0, 0, 0), font=label, anchor="mm")
    pen.text((8, top - 22), "S_img (style fidelity)", fill=(0, 0, 0), font=label)
    for i, (name, ps) in enumerate(points.items()):
        colour = COLOURS[i % len(COLOURS)]
        for x, y in ps:
            px, py = at(x, y)
            pen.ellipse([px - 2.5, py - 2.5, px + 2.5, py + 2.5], fill=colour)
        if ps:
            px, py = at(statistics.fmean(x for x, _ in ps), statistics.fmean(y for _, y in ps))
            pen.ellipse([px - 7, py - 7, px + 7, py + 7], fill=colour, outline=(0, 0, 0), width=2)
        ly = top + 10 + 22 * i
        pen.ellipse([width - right + 14, ly - 6, width - right + 26, ly + 6], fill=colour, outline=(0, 0, 0))
        pen.text((width - right + 34, ly), f"{name} (n={len(ps)})", fill=(0, 0, 0), font=label, anchor="lm")
    px, py = at(PAPER_OURS[0], PAPER_OURS[1])
    pen.line([px - 7, py - 7, px + 7, py + 7], fill=(0, 0, 0), width=2)
    pen.line([px - 7, py + 7, px + 7, py - 7], fill=(0, 0, 0), width=2)
    ly = top + 10 + 22 * len(points)
    pen.line([width - right + 14, ly - 6, width - right + 26, ly + 6], fill=(0, 0, 0), width=2)
    pen.line([width - right + 14, ly + 6, width - right + 26, ly - 6], fill=(0, 0, 0), width=2)
    pen.text((width - right + 34, ly), "paper, Table 1", fill=(0, 0, 0), font=label, anchor="lm")
    pen.text((width - right + 14, ly + 22), "big disc: mean", fill=(90, 90, 90), font=small)
    return picture


def _span(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = max((high - low) * 0.08, 0.01)
    return low - pad, high + pad


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


def write_reports(out: str, rows: list[dict], configs: dict[str, str], prompts: list[Prompt], styles: list[Style],
                  clip_name: str, sheet: tuple[int, int] = (4, 4)) -> list[str]:
    """Write summary.md, scatter.png and one sheet per configuration into `out`; return their paths."""
    paths = [os.path.join(out, "summary.md"), os.path.join(out, "scatter.png")]
    write_text_atomic(paths[0], summary_markdown(rows, configs, clip_name))
    _save_png(scatter(rows, list(configs)), paths[1])
    for name in configs:
        paths.append(os.path.join(out, f"sheet_{name}.png"))
        _save_png(contact_sheet(out, rows, name, prompts[:sheet[0]], styles[:sheet[1]]), paths[-1])
    return paths
