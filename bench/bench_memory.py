"""As lean as the reference: the VAE's memory layout, and the peak memory of a generation against
the memory plan, in one run.

    python3 bench/bench_memory.py            # medium model and VAE, 1024px (about 10 minutes idle)
    python3 bench/bench_memory.py --quick    # smaller model and VAE, 512px (about a minute)

Part 1, layout: the medium VAE decodes one image of the output size, and encodes it, three ways,
interleaved (the order flips every round), --repeats rounds: contiguous; channels-last as the VAE
runs it (its group norms by `vae.group_norm_channels_last`); and `reference`, channels-last with
torch's own CPU GroupNorm, as the reference implementation decodes. Per way its fastest pass, its
ratio to contiguous, its largest difference from the contiguous output (decode: max |a - b| on
[-1, 1] pixels, golden tolerance 1e-4; encode: max |a - b| / max |b| of the latent, tolerance
1e-5), the layout the VAE runs in on CPU (`layouts.MEASURED`), which must be the faster one, and
the pass as the VAE runs it against the reference's.

Part 2, memory: each kind runs in a fresh process (so the allocator starts clean): the models are
built, a 0.06M warm-up of the same kind runs, the RSS high-water mark is reset
(/proc/self/clear_refs) and the measured run follows; its peak growth is VmHWM minus the RSS
before it. Kinds, at the output size, cfg 3:
  plain     generate(): sampling one image (two batch rows)
  decode    decoding those codes
  stylized  stylize() with one style image whose bits are cached (a reused style)
  first     the same with the cache empty: the run VAE-encodes the style image first
against the plan (memory_plan.py, fp32 as on CPU): sampling_bytes for plain and stylized (KV cache
+ largest step), vae_bytes (traced on the meta device) for decode, and the larger of the encode
and the stylized sampling for first. Each kind runs --memory-repeats times; its lowest peak is
kept (the machine is shared; a neighbour's memory does not show in this process's RSS, but its
CPU load changes nothing here either).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_core import MEDIUM, OTHER_LOAD, ROOT, cfg_name, random_text, setup_threads  # noqa: E402

if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from infinity_core.memory_plan import sampling_bytes, vae_bytes  # noqa: E402
from infinity_core.network.config import TransformerConfig  # noqa: E402
from infinity_core.network.layouts import CHANNELS_LAST, CONTIGUOUS, MEASURED  # noqa: E402
from infinity_core.network.vae import VAEConfig, build_random_vae  # noqa: E402
from infinity_core.schedules import schedule  # noqa: E402

QUICK = TransformerConfig(depth=4, embed_dim=256, num_heads=4, text_channels=256, block_chunks=2)
VAE_MEDIUM = VAEConfig(64, (1, 2, 2, 4, 4), 1, 32)  # as bench_style.py
VAE_QUICK = VAEConfig(32, (1, 1, 2, 2, 4), 1, 32)
KINDS = ("plain", "decode", "stylized", "first")
LAYOUTS = {"contiguous": CONTIGUOUS, "channels_last": CHANNELS_LAST, "reference": CHANNELS_LAST}
MIB = 2 ** 20


def configs(quick: bool):
    return (QUICK, VAE_QUICK, "0.25M") if quick else (MEDIUM, VAE_MEDIUM, "1M")


# --- part 1: layout ----------------------------------------------------------------------------------

def _torch_group_norm(x, norm, **_):
    return norm(x)


def part_layout(args) -> dict:
    """Times the VAE per layout; `reference` is channels-last with torch's own GroupNorm kernel,
    the layout the reference implementation decodes in (outside the golden tolerance here)."""
    from infinity_core.network import vae as vae_module

    _, vae_cfg, pn = configs(args.quick)
    vae = build_random_vae(vae_cfg, args.seed)
    precise = vae_module.group_norm_channels_last
    H, W = schedule(1.0, pn).image_hw
    gen = torch.Generator().manual_seed(args.seed)
    codes = (torch.randint(0, 2, (1, vae_cfg.z_channels, H // 16, W // 16), generator=gen).float() * 2 - 1) * 0.18
    inputs = {"decode": codes, "encode": torch.rand(1, 3, H, W, generator=gen) * 2 - 1}
    runs = {"decode": vae.decoder, "encode": vae.encoder}
    times = {(part, name): [] for part in runs for name in LAYOUTS}
    outputs = {}
    with torch.no_grad():
        for rnd in range(args.repeats):
            for name in (list(LAYOUTS) if rnd % 2 == 0 else list(LAYOUTS)[::-1]):
                vae_module.group_norm_channels_last = _torch_group_norm if name == "reference" else precise
                for part, run in runs.items():
                    x = inputs[part].contiguous(memory_format=LAYOUTS[name])
                    started = OTHER_LOAD.start()
                    start = time.perf_counter()
                    outputs[(part, name)] = run(x)
                    times[(part, name)].append((time.perf_counter() - start, OTHER_LOAD.share(started)))
    vae_module.group_norm_channels_last = precise
    print(f"## layout: VAE {vae_cfg.base_ch}x{vae_cfg.ch_mult}x{vae_cfg.num_res_blocks} at {H}x{W}, "
          f"{torch.get_num_threads()} threads, {args.repeats} rounds, fastest pass of each (others' CPU share "
          "during it)")
    result = {}
    print("(reference: channels-last with torch's CPU GroupNorm, as the reference decodes; the differences are "
          "against the contiguous pass: decode max |a - b| on [-1, 1] pixels, tolerance 1e-4; encode max |a - b| / "
          "max |b|, tolerance 1e-5)")
    for part in runs:
        best = {name: min(times[(part, name)]) for name in LAYOUTS}
        diff = {}
        for name in ("channels_last", "reference"):
            a, b = outputs[(part, name)], outputs[(part, "contiguous")]
            gap = (a - b).abs().max()
            diff[name] = (gap if part == "decode" else gap / b.abs().max()).item()
        ratio = {name: best[name][0] / best["contiguous"][0] for name in ("channels_last", "reference")}
        faster = "channels_last" if ratio["channels_last"] < 1 else "contiguous"
        chosen = "channels_last" if MEASURED[("cpu", torch.float32, part)] == CHANNELS_LAST else "contiguous"
        print(f"{part}: " + ", ".join(f"{name} {best[name][0]:.2f} s ({best[name][1]:.0%} others)" for name in LAYOUTS)
              + f"; channels_last/contiguous {ratio['channels_last']:.2f} (differs by {diff['channels_last']:.1e}), "
              f"reference/contiguous {ratio['reference']:.2f} (differs by {diff['reference']:.1e}); "
              f"faster: {faster}; the VAE runs {chosen} on CPU{'' if faster == chosen else '  <-- NOT THE FASTER ONE'}")
        ours = best[chosen][0]
        print(f"{part} as the VAE runs it / the reference's channels-last: {ours / best['reference'][0]:.2f}")
        result[part] = dict(ratio=ratio, diff=diff, faster=faster, chosen=chosen,
                            against_reference=ours / best["reference"][0])
    return result


# --- part 2: memory ------------------------------------------------------------------------------------

def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def child(kind: str, quick: bool, seed: int, threads: int) -> dict:
    """One measured run of `kind`, in this (fresh) process."""
    from infinity_core.network.transformer import build_random_transformer
    from infinity_core.sampler import SamplingSettings, generate
    from infinity_core.style import BITS_CACHE, Stages, StyleConditioning, StyleReference, stylize

    torch.set_num_threads(threads)
    cfg, vae_cfg, pn = configs(quick)
    model = build_random_transformer(cfg, seed)
    vae = build_random_vae(vae_cfg, seed)
    texts = [random_text(n, cfg.text_channels, seed + i) for i, n in enumerate((6, 8, 14))]
    cond = StyleConditioning(*texts, None, {})
    style = StyleReference(torch.rand(768, 1024, 3, generator=torch.Generator().manual_seed(seed + 10)))
    settings = SamplingSettings(cfg=3.0, tau=0.5)

    def run(sched, stages=Stages()):
        if kind in ("plain", "decode"):
            codes = generate(model, cond.generation, sched, [seed], settings).summed_codes
            return codes if kind == "decode" else None
        if kind == "first":
            BITS_CACHE._entries.clear()
        return stylize(model, vae, cond, [style], stages, sched, [seed], settings)

    small, measured = schedule(1.0, "0.06M"), schedule(1.0, pn)
    with torch.no_grad():
        codes = run(small, Stages(fine_steps=frozenset({4, 5})))  # warm-up: 0.06M has 7 steps
        if kind == "decode":
            vae.decode(codes)  # warm-up
            codes = run(measured)
        elif kind == "stylized":
            BITS_CACHE.bits(vae, style.image, measured)  # the measured run finds the style's bits cached
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := the current RSS
        before = _status("VmRSS")
        vae.decode(codes) if kind == "decode" else run(measured)
        return {"peak": _status("VmHWM") - before}


def predicted(kind: str, quick: bool) -> int:
    """The plan's bytes for `kind` (fp32 compute, as on CPU)."""
    from infinity_core.style import Stages
    cfg, vae_cfg, pn = configs(quick)
    sched = schedule(1.0, pn)
    if kind == "plain":
        return sampling_bytes(cfg, sched.token_counts, 2, 4)
    if kind == "decode":
        return vae_bytes(vae_cfg, sched.image_hw, "decode")
    stylized = sampling_bytes(cfg, sched.token_counts, Stages().rows_at(len(sched), 1, True), 4)
    return stylized if kind == "stylized" else max(stylized, vae_bytes(vae_cfg, sched.image_hw, "encode"))


def measure(kind: str, args, threads: int) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", kind, str(int(args.quick)), str(args.seed),
               str(threads)]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the {kind} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def part_memory(args, threads: int) -> dict:
    cfg, vae_cfg, pn = configs(args.quick)
    peaks = {kind: [] for kind in KINDS}
    for rnd in range(args.memory_repeats):
        for kind in (KINDS if rnd % 2 == 0 else KINDS[::-1]):
            print(f"  {kind} run {rnd + 1}/{args.memory_repeats} ...", file=sys.stderr, flush=True)
            peaks[kind].append(measure(kind, args, threads)["peak"])
    print(f"\n## memory: transformer {cfg_name(cfg)}, "
          f"VAE {vae_cfg.base_ch}x{vae_cfg.ch_mult}x{vae_cfg.num_res_blocks}, "
          f"{schedule(1.0, pn).image_hw[0]}px ({pn}), cfg 3, fp32; peak growth of each run (lowest of "
          f"{args.memory_repeats}) against the memory plan")
    result = {}
    for kind in KINDS:
        peak, plan = min(peaks[kind]), predicted(kind, args.quick)
        spread = max(peaks[kind]) / peak - 1
        print(f"{kind:<9} peak {peak / MIB:7.0f} MiB, plan {plan / MIB:7.0f} MiB: measured/plan {peak / plan:.2f} "
              f"(runs differ by up to {spread:.0%})")
        result[kind] = dict(peak=peak, plan=plan)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller model and VAE at 512px")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs (default 0)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the layout timing (default 3)")
    parser.add_argument("--memory-repeats", type=int, default=2, help="runs of each memory kind (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the usable cores)")
    parser.add_argument("--part", choices=["layout", "memory", "all"], default="all",
                        help="which part to run (default all)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, quick, seed, threads = args.child
        print(json.dumps(child(kind, bool(int(quick)), int(seed), int(threads))))
        return
    threads = setup_threads(args.threads)
    print(f"torch {torch.__version__}, {threads} threads{' (quick)' if args.quick else ''}; load average "
          f"{os.getloadavg()[0]:.2f} at the start")
    if args.part in ("layout", "all"):
        part_layout(args)
    if args.part in ("memory", "all"):
        part_memory(args, threads)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
