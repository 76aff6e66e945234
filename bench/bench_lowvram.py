"""Low-VRAM weights: peak resident memory and time of sampling one image with bf16, fp8, Q8_0 and
Q4_0 weights of the same random model, each against bf16, measured in one run.

    python3 bench/bench_lowvram.py                     # tiny config (depth 4, width 64), 1024px
    python3 bench/bench_lowvram.py --config wide --budget 0.25M   # weights big enough to show

The model is written once as an fp32 .safetensors file (loaded as bf16 and as fp8 storage) and as
Q8_0 and Q4_0 GGUF files; all four compute in bf16. Each run is a fresh process: it imports
torch, loads the model, samples a 0.06M warm-up image, resets the RSS high-water mark, samples
one image at the budget (cfg 3, so 2 batch rows), and reports:
  - peak: the highest RSS while sampling that image (VmHWM after /proc/self/clear_refs) minus
    the RSS before loading: weights + KV cache + activations + allocator slack (a load's
    transient copies, such as an fp32 file's pages while casting to bf16, are left out);
  - weights: the bytes of the loaded model's tensors as stored;
  - seconds: the wall time of the image at the budget.
Runs go round-robin over the options, the order flipping each round, `--repeats` rounds; each
option's time is its fastest run and its peak the lowest (the machine is shared). The last
lines are the ratios against bf16.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

OPTIONS = ("bf16", "fp8_e4m3fn", "Q8_0", "Q4_0")
CONFIGS = {  # name -> TransformerConfig arguments
    "tiny": dict(depth=4, embed_dim=64, num_heads=2, text_channels=128, block_chunks=2),
    "wide": dict(depth=2, embed_dim=1024, num_heads=8, text_channels=256, block_chunks=2),
}


def child(path: str, option: str, config: str, budget: str, threads: int) -> dict:
    """One measured run, in this (fresh) process."""
    import time

    import torch
    from bench_core import OTHER_LOAD, random_text
    from infinity_core.network.config import TransformerConfig
    from infinity_core.sampler import SamplingSettings, generate
    from infinity_core.schedules import schedule
    from infinity_core.weights.transformer_file import load_transformer

    torch.set_num_threads(threads)

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

    before = status("VmRSS")
    storage = torch.float8_e4m3fn if option == "fp8_e4m3fn" else None
    model = load_transformer(path, dtype=torch.bfloat16, storage=storage)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    cfg = TransformerConfig(**CONFIGS[config])
    assert model.config == cfg
    text = random_text(12, cfg.text_channels, seed=1)
    settings = SamplingSettings(cfg=3.0, tau=1.0)
    generate(model, text, schedule(1.0, "0.06M"), [0], settings)  # warm-up
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := current RSS (the loaded model), so the peak is the sampling's, not the load's
    started = OTHER_LOAD.start()
    start = time.perf_counter()
    generate(model, text, schedule(1.0, budget), [0], settings)
    seconds = time.perf_counter() - start
    return {"peak": status("VmHWM") - before, "weights": weights, "seconds": seconds,
            "others": OTHER_LOAD.share(started)}


def write_files(folder: str, config: str) -> dict:
    import torch
    from safetensors.torch import save_file

    from infinity_core.network.config import TransformerConfig
    from infinity_core.network.transformer import build_random_transformer
    from infinity_core.weights.gguf_file import write_gguf

    state = build_random_transformer(TransformerConfig(**CONFIGS[config]), seed=0).state_dict()
    plain = os.path.join(folder, "model.safetensors")
    save_file(state, plain)
    files = {"bf16": plain, "fp8_e4m3fn": plain}
    for qtype in ("Q8_0", "Q4_0"):
        files[qtype] = os.path.join(folder, f"model-{qtype}.gguf")
        write_gguf(files[qtype], state, qtype)
    del state, torch
    return files


def measure(path, option, config, budget, threads) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", path, option, config, budget, str(threads)]
    out = subprocess.run(command, capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "bench")])})
    if out.returncode != 0:
        raise RuntimeError(f"{option} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def progress(line: str) -> None:
    """A line on stderr as the work goes (a run at 1M takes minutes); the results go to stdout at the end."""
    print(line, file=sys.stderr, flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=list(CONFIGS), default="tiny",
                        help="tiny: depth 4, width 64; wide: depth 2, width 1024 (default tiny)")
    parser.add_argument("--budget", default="1M", help="pixel budget of the measured image (default 1M = 1024px)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each option (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the usable cores)")
    parser.add_argument("--tmp", default=None, help="folder for the model files (default: the system's)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        path, option, config, budget, threads = args.child
        print(json.dumps(child(path, option, config, budget, int(threads))))
        return
    threads = args.threads or len(os.sched_getaffinity(0))
    folder = tempfile.mkdtemp(prefix="infinity_lowvram_", dir=args.tmp)
    total = args.repeats * len(OPTIONS)
    try:
        progress(f"writing the {args.config} model as {', '.join(OPTIONS)}; then {total} runs, each in a fresh process")
        files = write_files(folder, args.config)
        runs = {option: [] for option in OPTIONS}
        for rnd in range(args.repeats):
            for option in (OPTIONS if rnd % 2 == 0 else OPTIONS[::-1]):
                result = measure(files[option], option, args.config, args.budget, threads)
                runs[option].append(result)
                done = sum(map(len, runs.values()))
                progress(f"[{done}/{total}] {option}: {result['seconds']:.1f} s, peak {result['peak'] / 2**20:.1f} MiB")
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"## {args.config} config {CONFIGS[args.config]}, one image at {args.budget} with cfg 3, bf16 compute, "
          f"{threads} threads, {args.repeats} runs each")
    head = f"{'weights':<11} {'stored MiB':>10} {'peak MiB':>9} {'seconds':>8} {'spread':>7} {'others':>7}"
    print(head)
    print("-" * len(head))
    best = {}
    for option, results in runs.items():
        times = [r["seconds"] for r in results]
        best[option] = {"peak": min(r["peak"] for r in results), "seconds": min(times)}
        print(f"{option:<11} {results[0]['weights'] / 2**20:10.2f} {best[option]['peak'] / 2**20:9.1f} "
              f"{best[option]['seconds']:8.2f} {max(times) / min(times):7.2f} "
              f"{max(r['others'] for r in results):7.2f}")
    print("(spread = slowest / fastest run; others = the largest share of the CPUs other processes took during a run)")
    for option in OPTIONS[1:]:
        print(f"{option}/bf16: peak {best[option]['peak'] / best['bf16']['peak']:.2f}, "
              f"time {best[option]['seconds'] / best['bf16']['seconds']:.2f}")


if __name__ == "__main__":
    main()
