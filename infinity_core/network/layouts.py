"""The memory layout the VAE runs in on each kind of device: contiguous (NCHW) or channels-last
(NHWC), whichever was measured faster there.

The layout of the input decides: convolutions, group norms (`vae.Norm`), upsampling and the
elementwise ops all keep the layout they are given. On CPU, channels-last convolutions skip
oneDNN's reorders, and `bench/bench_memory.py` measured both passes faster in it (docs/memory.md);
its outputs stay within the golden cases' tolerances (decode: max |a - b| <= 1e-4 on [-1, 1]
pixels, measured up to 4e-5; encode: the latent within 1e-5 relative, measured up to 3.5e-6),
because channels-last group norms are computed by `vae.group_norm_channels_last`, not by torch's
CPU kernel, which loses up to 1.5e-4 of a pixel there.

A device kind not in MEASURED (CUDA, MPS, ...) is timed once per process, on its first decode or
encode: a small pass in each layout, the faster kept for the process. `bench/gpu_check.py` prints
what it chose and checks the golden cases in that layout; add its choice to MEASURED to fix it
(a choice made by timing may differ between processes; the two layouts' images differ by less
than the decode tolerance).
"""
from __future__ import annotations

import time

import torch

CONTIGUOUS, CHANNELS_LAST = torch.contiguous_format, torch.channels_last
# (device kind, dtype, "decode" | "encode") -> layout, measured there. In bf16 / fp16 on CPU the
# channels-last convolutions round more (the tiny test VAE's latent: 0.044 off fp32, 0.031
# contiguous), so those stay contiguous.
MEASURED = {("cpu", torch.float32, "decode"): CHANNELS_LAST, ("cpu", torch.float32, "encode"): CHANNELS_LAST,
            **{("cpu", dtype, part): CONTIGUOUS
               for dtype in (torch.bfloat16, torch.float16) for part in ("decode", "encode")}}
_chosen: dict = {}


def layout_for(vae, device, part: str) -> torch.memory_format:
    """The layout `vae` runs `part` ("decode" or "encode") in on `device`."""
    key = (torch.device(device).type, vae.dtype, part)
    if key not in _chosen:
        _chosen[key] = MEASURED.get(key) or fastest(vae, device, part)
    return _chosen[key]


def pass_seconds(vae, device, part: str, layout: torch.memory_format, latent_hw=(32, 32), repeats: int = 2) -> float:
    """The fastest of `repeats` passes of `part` in `layout` on a latent of `latent_hw` (or the
    image it decodes to), after one warm-up pass."""
    p = vae.config.patch_size
    shape = (1, vae.config.z_channels, *latent_hw) if part == "decode" else (1, 3, latent_hw[0] * p, latent_hw[1] * p)
    x = torch.zeros(shape, device=device, dtype=vae.dtype).contiguous(memory_format=layout)
    run = vae.decoder if part == "decode" else vae.encoder
    best = float("inf")
    with torch.no_grad():
        for i in range(repeats + 1):
            _synchronize(device)
            start = time.perf_counter()
            run(x)
            _synchronize(device)
            if i:
                best = min(best, time.perf_counter() - start)
    return best


def fastest(vae, device, part: str) -> torch.memory_format:
    return min((CONTIGUOUS, CHANNELS_LAST), key=lambda layout: pass_seconds(vae, device, part, layout))


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
