"""Core engine benchmark: per-scale timing of plain generation, and checkpoint-loading RAM.

    python3 bench/bench_core.py            # full run (a few minutes; writes ~4.5 GB to --tmp)
    python3 bench/bench_core.py --quick    # smaller, under a minute

Part 1 times a plain 256px (0.06M) and 512px (0.25M) generation of a tiny and a medium random
model, per scale step (timestamps from the sampler's callback) after a warm-up. Each step's time
is its fastest over the repeats (every repeat does the same work at that step); runs during which
other processes took over 15% of the CPUs are redone, a few times at most.
Next to the times it prints the work each step needs (multiply-accumulates of the model on the
batch the step runs, see `step_macs`) so a ratio can be held against its floor: time ratios near
the work ratio mean the step is compute-bound; a flat time across steps means overhead.

Part 2 writes a large random transformer checkpoint (.safetensors and zip .pth), loads it in a
fresh subprocess per format, and prints the peak RSS of `load_transformer` over the file size
(one full copy of the weights = 1.0). Everything printed is a ratio measured in this run; the
machine is shared and noisy, so absolute times are for orientation only.

Helpers here (configs, the work model, thread setup) are imported by bench_style.py.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from infinity_core.network.config import TransformerConfig  # noqa: E402
from infinity_core.network.text import TextBatch  # noqa: E402
from infinity_core.network.transformer import InfinityTransformer, build_random_transformer  # noqa: E402
from infinity_core.sampler import SamplingSettings, generate  # noqa: E402
from infinity_core.schedules import Schedule, schedule  # noqa: E402

TINY = TransformerConfig(depth=4, embed_dim=64, num_heads=2, text_channels=128, block_chunks=2)
# Medium: a plain 1024px (1M) generation takes ~18-20 s on the 2-core CPU box when it is quiet
# (~2.5 s at 512px); attention is ~55% of it, the linears ~30%.
MEDIUM = TransformerConfig(depth=6, embed_dim=512, num_heads=8, text_channels=256, block_chunks=2)
# Quick mode's "medium": same shape family, a quarter of the work.
MEDIUM_QUICK = TransformerConfig(depth=4, embed_dim=256, num_heads=4, text_channels=256, block_chunks=2)
# ~2.2 GB of fp32 weights (depth 8 of the 2B model's width); quick: ~0.55 GB.
BIG = TransformerConfig(depth=8, embed_dim=2048, num_heads=16, text_channels=2048, block_chunks=8)
BIG_QUICK = TransformerConfig(depth=2, embed_dim=2048, num_heads=16, text_channels=256, block_chunks=2)

SETTINGS = SamplingSettings(cfg=3.0, tau=0.5)


def setup_threads(threads: int | None) -> int:
    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n


def random_text(tokens: int, channels: int, seed: int) -> TextBatch:
    gen = torch.Generator().manual_seed(seed)
    return TextBatch(torch.randn(tokens, channels, generator=gen), [tokens])


def cfg_name(cfg: TransformerConfig) -> str:
    return f"d{cfg.depth} w{cfg.embed_dim} h{cfg.num_heads} t{cfg.text_channels}"


# --- noise: other processes on the shared machine ----------------------------------------------------

BUSY_LIMIT = 0.15  # a run during which other processes used more than this share of the CPUs is redone


class OtherLoad:
    """The share of the machine's CPU time that other processes used during a span: the busy
    jiffies of /proc/stat minus this process's own CPU time. 0 on a quiet machine; above
    BUSY_LIMIT the span's timing is suspect (2 threads on 2 cores stall whenever one is taken)."""

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK")
        self.cpus = os.cpu_count() or 1

    @staticmethod
    def _busy_jiffies() -> int:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except OSError:
            return 0
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal

    def start(self):
        return self._busy_jiffies(), time.process_time(), time.perf_counter()

    def share(self, started) -> float:
        busy0, cpu0, wall0 = started
        others = (self._busy_jiffies() - busy0) / self.tick - (time.process_time() - cpu0)
        return max(0.0, others) / (self.cpus * max(time.perf_counter() - wall0, 1e-9))


OTHER_LOAD = OtherLoad()


def repeat_until_quiet(kinds: list, run, repeats: int, max_rounds: int) -> tuple[dict, dict]:
    """Run every kind in turn (the order flips each round, so drift hits all alike) until each has
    `repeats` runs during which other processes stayed under BUSY_LIMIT, or `max_rounds` rounds.
    Returns {kind: [result, ...]} with every run kept, and {kind: disturbed count}."""
    runs = {k: [] for k in kinds}
    disturbed = {k: 0 for k in kinds}
    for rnd in range(max_rounds):
        todo = [k for k in kinds if len(runs[k]) - disturbed[k] < repeats]
        if not todo:
            break
        for kind in (todo if rnd % 2 == 0 else todo[::-1]):
            started = OTHER_LOAD.start()
            result = run(kind)
            if OTHER_LOAD.share(started) > BUSY_LIMIT:
                disturbed[kind] += 1
            runs[kind].append(result)
    return runs, disturbed


# --- the work model ---------------------------------------------------------------------------------

def step_macs(cfg: TransformerConfig, sched: Schedule, step: int, rows: int, text_tokens: int) -> float:
    """Multiply-accumulates the transformer needs at one scale step for `rows` batch rows (CFG
    halves counted as rows): per block, the token-wise linears (qkv, proj, cross q/proj, FFN),
    self-attention over every cached token (QK^T and PV), cross-attention over the text, and the
    text K/V projection (recomputed at every step). Embedding, head and sampling are left out."""
    C, F_ = cfg.embed_dim, cfg.ffn_dim
    L = sched.token_counts[step]
    T = sum(sched.token_counts[:step + 1])
    per_row = (L * (6 * C * C + 2 * C * F_)      # qkv 3C^2, proj C^2, cross q+proj 2C^2, fc1+fc2
               + 2 * L * T * C                     # self-attention QK^T and PV over the cache
               + 2 * L * text_tokens * C           # cross-attention
               + 2 * text_tokens * C * C)          # cross K/V of the text memory
    return cfg.depth * rows * per_row


def run_macs(cfg, sched, rows_per_step, text_tokens) -> list[float]:
    return [step_macs(cfg, sched, si, rows_per_step[si], text_tokens) for si in range(len(sched))]


# --- part 1: per-scale timing ------------------------------------------------------------------------

def timed_generate(model, text, sched, seed) -> list[float]:
    """Seconds per scale step of one plain generation (step 0 includes the text conditioning)."""
    stamps = []
    start = time.perf_counter()
    generate(model, text, sched, [seed], SETTINGS, callback=lambda e: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip([start] + stamps, stamps)]


def lower_envelope(runs: list[list[float]]) -> list[float]:
    """Per step, the fastest of the repeats. Every repeat does the same work at each step, so this
    is each step undisturbed by the other tenants of a shared machine (whose bursts last seconds
    and seldom hit the same step twice)."""
    return [min(steps) for steps in zip(*runs)]


def part_timing(args) -> None:
    medium = MEDIUM_QUICK if args.quick else MEDIUM
    text_tokens = 16
    configs = [("tiny", TINY), ("medium", medium)]
    pns = ["0.06M", "0.25M"]
    results, counts = {}, {}
    for label, cfg in configs:
        model = build_random_transformer(cfg, args.seed)
        text = random_text(text_tokens, cfg.text_channels, args.seed + 1)
        timed_generate(model, text, schedule(1.0, "0.25M"), args.seed)  # warm-up: allocator, kernels
        # interleave the two sizes so drift on the shared machine hits both alike
        runs, disturbed = repeat_until_quiet(
            pns, lambda pn, model=model, text=text: timed_generate(model, text, schedule(1.0, pn), args.seed),
            args.repeats, args.repeats + 4)
        for pn in pns:
            results[(label, pn)] = lower_envelope(runs[pn])
            counts[(label, pn)] = (len(runs[pn]), disturbed[pn])
        model = None
        gc.collect()

    sched512 = schedule(1.0, "0.25M")
    rows = [2] * len(sched512)  # one image, CFG: 2 batch rows
    work = {lab: run_macs(cfg, sched512, rows, text_tokens) for lab, cfg in configs}
    print(f"## per-scale time of a plain generation (cfg 3, {torch.get_num_threads()} threads; per step the best of "
          f"the repeats; runs (disturbed): " + ", ".join(f"{lab}@{pn} {n} ({d})" for (lab, pn), (n, d) in counts.items()) + ")")
    print(f"tiny = {cfg_name(TINY)}, medium = {cfg_name(medium)}; ms per step; "
          "GMAC = work of the step (medium, 2 rows); GF/s = 2*GMAC/time at 512px")
    head = f"{'step':>4} {'grid':>7} | {'tiny256':>8} {'tiny512':>8} | {'med256':>8} {'med512':>8} {'GMAC':>8} {'GF/s':>6}"
    print(head)
    print("-" * len(head))
    for si, (h, w) in enumerate(sched512.scales):
        cells = []
        for label, _ in configs:
            for pn in pns:
                steps = results[(label, pn)]
                cells.append(f"{steps[si] * 1e3:8.1f}" if si < len(steps) else f"{'':>8}")
        g = work["medium"][si] / 1e9
        gfs = 2 * g / results[("medium", "0.25M")][si]
        print(f"{si:>4} {f'{h}x{w}':>7} | {cells[0]} {cells[1]} | {cells[2]} {cells[3]} {g:8.2f} {gfs:6.1f}")
    tot = {k: sum(v) for k, v in results.items()}
    print("-" * len(head))
    print(f"{'all':>4} {'':>7} | {tot[('tiny', '0.06M')] * 1e3:8.1f} {tot[('tiny', '0.25M')] * 1e3:8.1f} | "
          f"{tot[('medium', '0.06M')] * 1e3:8.1f} {tot[('medium', '0.25M')] * 1e3:8.1f} {sum(work['medium']) / 1e9:8.2f}")
    sched256 = schedule(1.0, "0.06M")
    for label, cfg in configs:
        w512 = sum(work[label])
        w256 = sum(run_macs(cfg, sched256, [2] * len(sched256), text_tokens))
        print(f"{label} 512/256 time: {tot[(label, '0.25M')] / tot[(label, '0.06M')]:.2f}  "
              f"(work ratio {w512 / w256:.1f}, step-count ratio {len(sched512) / len(sched256):.2f})")
    tiny_small = results[("tiny", "0.25M")][1:4]
    med = results[("medium", "0.25M")]
    print(f"fixed cost per step (tiny, steps 1-3 mean): {1e3 * sum(tiny_small) / len(tiny_small):.1f} ms; "
          f"medium steps 0-5 take {sum(med[:6]) / sum(med):.1%} of its 512px time for "
          f"{sum(work['medium'][:6]) / sum(work['medium']):.1%} of its work")
    print(f"medium last step (32x32): {med[-1] / sum(med):.0%} of the 512px time, "
          f"{work['medium'][-1] / sum(work['medium']):.0%} of the work")


# --- part 2: loading RAM ----------------------------------------------------------------------------

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
import safetensors.torch
import infinity_core.weights.checkpoint
from infinity_core.weights.transformer_file import load_transformer
torch.set_num_threads(int(sys.argv[4]))

def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out

def peak_rss():
    # VmHWM, not ru_maxrss: a child started by vfork+exec inherits its parent's RSS high-water
    # in ru_maxrss (the kernel folds the borrowed mm's peak into signal->maxrss at exec), so
    # ru_maxrss here would report the benchmark parent's peak, not this process's.
    return status()["VmHWM"]

def reset_peak():
    # Linux >= 4.0: writing "5" resets VmHWM to the current RSS, so the peak below is the
    # load's own, not the imports'.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

base = status()
reset = reset_peak()
start = time.perf_counter()
model = load_transformer(sys.argv[2], "cpu", getattr(torch, sys.argv[3]))
seconds = time.perf_counter() - start
peak = peak_rss()
after = status()
# first use reads every weight: with a memory-mapped load this is when the pages come in
with torch.no_grad():
    for p in model.parameters():
        p.sum()
peak_used = peak_rss()
touched = status()
print(json.dumps({"base": base, "reset": reset, "peak": peak, "after": after, "peak_used": peak_used, "touched": touched,
                  "seconds": seconds, "dtypes": sorted({str(p.dtype) for p in model.parameters()})}))
"""


def random_state_dict(cfg: TransformerConfig, dtype: torch.dtype, seed: int) -> dict[str, torch.Tensor]:
    """Random weights of the model's exact keys and shapes, built tensor by tensor from the meta
    model (no model is materialised)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, meta in InfinityTransformer(cfg).state_dict().items():
        if name.endswith("scale_mul_1H11"):
            value = torch.full(meta.shape, math.log(4.0))
        else:
            value = torch.randn(meta.shape, generator=gen).mul_(0.02)
        state[name] = value.to(dtype)
    return state


def measure_load(path: str, dtype: str, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, ROOT, path, dtype, str(threads)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"loading {path} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def part_loading(args) -> None:
    from safetensors.torch import save_file

    cfg = BIG_QUICK if args.quick else BIG
    usage = shutil.disk_usage(args.tmp)
    numel = sum(math.prod(t.shape) for t in InfinityTransformer(cfg).state_dict().values())
    need = numel * (4 + 4 + 2 + 2)  # fp32 .safetensors + .pth, bf16 .safetensors + .pth
    print(f"\n## peak RSS of load_transformer over the file size ({cfg_name(cfg)}, {numel / 1e9:.2f} G params)")
    if usage.free < 2 * need:
        print(f"skipped: {args.tmp} has {usage.free / 1e9:.1f} GB free, need {2 * need / 1e9:.1f} GB")
        return
    workdir = tempfile.mkdtemp(prefix="infinity_bench_", dir=args.tmp)
    try:
        files = []
        for dtype in (torch.float32, torch.bfloat16):
            state = random_state_dict(cfg, dtype, args.seed)
            tag = str(dtype).split(".")[-1]
            sft, pth = os.path.join(workdir, f"big_{tag}.safetensors"), os.path.join(workdir, f"big_{tag}.pth")
            save_file(state, sft)
            torch.save(state, pth)  # zipfile format (the default)
            files += [(sft, tag), (pth, tag)]
            del state
            gc.collect()
        # fresh child per file and load dtype: (file dtype, load dtype)
        cases = [(f, "float32") for f, t in files if t == "float32"]       # the brief's case: fp32 -> fp32
        cases += [(f, "bfloat16") for f, t in files if t == "float32"]     # fp32 file, bf16 blocks
        cases += [(f, "bfloat16") for f, t in files if t == "bfloat16"]    # bf16 file, bf16 blocks
        print("peak = highest RSS during load_transformer minus the child's RSS before it (torch and "
              "infinity_core imported); anon/file = growth of RssAnon/RssFile by the end of the load; "
              "used = peak once every weight has been read (a memory-mapped load pages in lazily); "
              "all over the file size")
        head = f"{'format':<12} {'file':>4} {'load':>4} {'GB':>5} {'sec':>5} | {'peak':>5} {'anon':>6} {'file':>6} | {'used':>5}"
        print(head)
        print("-" * len(head))
        main_lines = []
        for path, load_dtype in cases:
            r = measure_load(path, load_dtype, args.threads or len(os.sched_getaffinity(0)))
            size = os.path.getsize(path)
            base = r["base"]
            ext = os.path.splitext(path)[1]
            file_dtype = "bf16" if "bfloat16" in path else "fp32"
            short = {"float32": "fp32", "bfloat16": "bf16"}[load_dtype]
            peak = (r["peak"] - base["VmRSS"]) / size
            used = (r["peak_used"] - base["VmRSS"]) / size
            anon = (r["after"]["RssAnon"] - base["RssAnon"]) / size
            filed = (r["after"]["RssFile"] - base["RssFile"]) / size
            print(f"{ext:<12} {file_dtype:>4} {short:>4} {size / 1e9:5.2f} {r['seconds']:5.1f} | "
                  f"{peak:5.2f} {anon:+6.2f} {filed:+6.2f} | {used:5.2f}" + ("" if r["reset"] else "  (peak not reset)"))
            if (file_dtype, short) == ("fp32", "fp32"):
                main_lines.append(f"peak_load_rss/file_size: {peak:.2f}  ({ext}, fp32; "
                                  f"after reading every weight once: {used:.2f})")
        for line in main_lines:
            print(line)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller models and checkpoint, under a minute")
    parser.add_argument("--seed", type=int, default=0, help="weights, text and sampling seed")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per size (each step keeps its fastest); default 3, quick 2")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the usable cores)")
    parser.add_argument("--tmp", default="/tmp", help="where the big checkpoint files go (removed afterwards)")
    parser.add_argument("--skip-timing", action="store_true", help="leave out part 1, the time per scale step")
    parser.add_argument("--skip-loading", action="store_true", help="leave out part 2, the peak RSS of loading")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 3)
    threads = setup_threads(args.threads)
    print(f"torch {torch.__version__}, {threads} threads{' (quick)' if args.quick else ''}")
    if not args.skip_timing:
        part_timing(args)
    if not args.skip_loading:
        part_loading(args)


if __name__ == "__main__":
    main()
