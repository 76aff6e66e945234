"""One prepared check of the CUDA path: proves it and measures it in one command.

    python3 bench/gpu_check.py                          # on one GPU: at most ~6 minutes on an H100
    python3 bench/gpu_check.py --device cpu --tiny      # every part on the tiny models (a unit test runs this)

It prints a table and writes the same as JSON (gpu_check_<device>_<date>.json) into $OUT when set,
else into --out. Parts, in the order they run (--budget SECONDS drops the parts that would start
after it, each with a line saying so; a part that fails is reported and the next one runs):

1. environment: torch, CUDA and cuDNN versions, the device; for each scale of the 1M schedule, which
   scaled-dot-product-attention kernel (flash / memory-efficient / cuDNN / math) the model's own
   self-attention calls get, with their dtype and strides (a one-block model of the 2B's width, bf16
   on a GPU); host synchronisations per scale of a plain and a stylized run (on CUDA counted by
   torch.cuda.set_sync_debug_mode; everywhere, the ops that read a value back to the host: .item(),
   nonzero, and torch.multinomial, whose input check reads one); and how often the KV cache is moved
   to new buffers (0 for a plain run; once per step where rows leave for a stylized one).
2. numerics, in fp32 (TF32 off): every golden case of tests/golden and tests/golden_8b on the
   device: teacher-forced logits within 1e-4 relative of the stored ones (the CPU tests hold
   1e-5); the sampled bits, each scale replaying the golden bits and drawing with the reference's
   CPU generator from the device's logits, equal except at the stored near-ties; VAE decode within
   1e-4 and encode within 1e-5 relative, in the layout the VAE chose on this device. Then a tiny
   stylized run on the device against the same run on the CPU, each step replaying the CPU's
   bits: logits within 1e-4 relative.
3. 2b: Infinity-2B-shaped random weights (the real config) in bf16 at 1024x1024: plain, stylized
   (one style) and semantic regions (three styles) seconds per image (a warm-up first, then the
   median of --repeats, synchronised) and the VAE decode; stylized/plain and regions/plain; the
   peak memory growth of each against memory_plan.py's prediction.
4. batching: what a pass of 4 images in one batch would buy over 4 passes of 1 (today each image
   of a batch runs as its own pass, for bit-reproducibility): per scale and in all.
5. lowbit: the plain run with fp8 (e4m3fn) and with GGUF Q8_0 weights made on the fly from the
   same weights: time and peak against bf16. Q8_0 blocks are made by `ggml.quantize_q8_0`,
   byte for byte the gguf package's (tested), as the GPU machine has no gguf package; GGUF files
   themselves need it to be read.
6. 8b: Infinity-8B-shaped bf16 at 1024x1024, plain: time and peak (skipped with a line when the
   plan says it does not fit in the free memory).

In --tiny mode the same parts run on the tiny models at 256px (0.06M: 7 steps, so the stylized runs
use fine steps 4-5).
Exit status: 1 when a numerics check failed or a part raised, else 0.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from infinity_core.memory_plan import GIB, sampling_bytes, weight_bytes  # noqa: E402
from infinity_core.network import transformer as transformer_module  # noqa: E402
from infinity_core.network.config import PRESETS, TransformerConfig  # noqa: E402
from infinity_core.network.layouts import layout_for  # noqa: E402
from infinity_core.network.text import TextBatch  # noqa: E402
from infinity_core.network.transformer import KVCache, build_random_transformer  # noqa: E402
from infinity_core.network.vae import PRESETS as VAE_PRESETS  # noqa: E402
from infinity_core.network.vae import build_random_vae  # noqa: E402
from infinity_core.sampler import SamplingSettings, draw_bits, generate, make_generators, run_scales  # noqa: E402
from infinity_core.schedules import schedule  # noqa: E402
from infinity_core.style import BITS_CACHE, Regions, Stages, StyleConditioning, StyleReference, stylize  # noqa: E402
from infinity_core.style import engine as style_engine  # noqa: E402
from infinity_core.tiny import TINY_8B_TRANSFORMER, TINY_TRANSFORMER, TINY_VAE  # noqa: E402
from infinity_core.weights.ggml import quantize_q8_0  # noqa: E402
from infinity_core.weights.transformer_file import load_transformer, transformer_from_state  # noqa: E402
from infinity_core.weights.vae_file import load_vae  # noqa: E402

SETTINGS = SamplingSettings(cfg=3.0, tau=0.5)
TOLERANCE = {"logits": 1e-4, "decode": 1e-4, "encode": 1e-5, "stylized_logits": 1e-4}
KERNELS = {0: "math", 1: "flash", 2: "memory-efficient", 3: "cuDNN", 4: "overrideable"}  # torch's SDPBackend
TARGETS = "Infinity README: 0.8 s for a plain 2B 1024x1024 image on one H100; paper: 6.44 s stylized on an A6000; " \
          "stylized/plain at most 1.10; peak within 10% of the memory plan"


class Check:
    """The device, the sizes of this run, the budget, and the results so far."""

    def __init__(self, args):
        self.args = args
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.tiny = args.tiny
        self.dtype = torch.float32 if self.tiny and not self.cuda else torch.bfloat16
        self.pn = "0.06M" if self.tiny else "1M"
        self.stages = Stages(fine_steps=frozenset({4, 5})) if self.tiny else Stages()  # 0.06M has 7 steps
        self.repeats = args.repeats or (1 if self.tiny else 3)
        self.started = time.perf_counter()
        self.results: dict = {}
        self.failed = False

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def run_part(self, name: str, part) -> None:
        if self.elapsed() > self.args.budget:
            self.results[name] = {"status": f"skipped: the budget of {self.args.budget:.0f} s was spent"}
            print(f"\n## {name}: skipped (budget of {self.args.budget:.0f} s spent after {self.elapsed():.0f} s)")
            return
        print(f"\n## {name} (at {self.elapsed():.0f} s)")
        started, cpu = time.perf_counter(), time.process_time()
        try:
            result = part(self)
            result.setdefault("status", "ok")
            result["seconds"] = time.perf_counter() - started
            result["cpu_seconds"] = time.process_time() - cpu
        except Exception as exc:  # one part's failure must not hide the others' results
            traceback.print_exc()
            result = {"status": f"failed: {type(exc).__name__}: {exc}"}
        if result["status"] != "ok" and not result["status"].startswith("skipped"):
            self.failed = True
        self.results[name] = result
        release(self)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


def release(check: Check) -> None:
    import gc
    gc.collect()
    if check.cuda:
        torch.cuda.empty_cache()


def random_text(tokens: int, channels: int, seed: int) -> TextBatch:
    gen = torch.Generator().manual_seed(seed)
    return TextBatch(torch.randn(tokens, channels, generator=gen), [tokens])


@contextlib.contextmanager
def peak_growth(check: Check):
    """Yields a dict whose "bytes" is, after the block, the most memory it added on the device
    (CUDA: allocated by torch; CPU: resident, from VmHWM)."""
    out = {}
    if check.cuda:
        check.sync()
        torch.cuda.reset_peak_memory_stats(check.device)
        base = torch.cuda.memory_allocated(check.device)
        yield out
        check.sync()
        out["bytes"] = torch.cuda.max_memory_allocated(check.device) - base
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status("VmRSS")
        yield out
        out["bytes"] = _status("VmHWM") - base


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def timed(check: Check, fn) -> dict:
    """fn() once to warm up, then --repeats times: the median seconds, and the largest peak growth."""
    fn()
    seconds, peaks = [], []
    for _ in range(check.repeats):
        with peak_growth(check) as peak:
            check.sync()
            start = time.perf_counter()
            fn()
            check.sync()
            seconds.append(time.perf_counter() - start)
        peaks.append(peak["bytes"])
    return {"seconds": statistics.median(seconds), "all_seconds": seconds, "peak_bytes": max(peaks)}


# --- 1. environment ------------------------------------------------------------------------------------

class HostReads(TorchDispatchMode):
    """Counts the ops that read a value back to the host (a synchronisation on a GPU)."""
    OPS = ("aten._local_scalar_dense", "aten.nonzero", "aten.multinomial", "aten.equal", "aten.is_nonzero")

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func.overloadpacket) in self.OPS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def per_step_syncs(check: Check, run) -> dict:
    """Host reads (and, on CUDA, synchronisations torch reports) per step of run(callback)."""
    reads, syncs, marks = [], [], {"reads": 0, "syncs": 0}
    counter = HostReads()
    with warnings.catch_warnings(record=True) as caught, counter:
        warnings.simplefilter("always")
        if check.cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            def callback(event):
                reads.append(counter.count - marks["reads"])
                marks["reads"] = counter.count
                found = sum("synchroniz" in str(w.message) for w in caught)
                syncs.append(found - marks["syncs"])
                marks["syncs"] = found
            run(callback)
        finally:
            if check.cuda:
                torch.cuda.set_sync_debug_mode(0)
    return {"host_reads": reads, "cuda_syncs": syncs if check.cuda else None}


def part_environment(check: Check) -> dict:
    env = {"torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if check.cuda else None,
           "device": torch.cuda.get_device_name(check.device) if check.cuda else platform.processor() or "cpu",
           "python": platform.python_version()}
    print(", ".join(f"{k} {v}" for k, v in env.items()))
    width = TINY_TRANSFORMER if check.tiny else PRESETS["infinity_2b"]
    cfg = TransformerConfig(depth=1, embed_dim=width.embed_dim, num_heads=width.num_heads,
                            text_channels=width.text_channels, block_chunks=1)
    model = build_random_transformer(cfg, 0, device=check.device, dtype=check.dtype)
    sched = schedule(1.0, check.pn)
    seen = []
    plain = transformer_module.plain_attention

    def recording(q, k, v):
        seen.append((q, k, v))
        return plain(q, k, v)
    transformer_module.plain_attention = recording
    try:
        generate(model, random_text(14, cfg.text_channels, 1), sched, [0], SETTINGS)
    finally:
        transformer_module.plain_attention = plain
    kernels = []
    print(f"self-attention per scale ({'one block of the 2B width' if not check.tiny else 'tiny'}, {check.dtype}):")
    for si, (q, k, v) in enumerate(seen):
        # what F.scaled_dot_product_attention picks for these very tensors (its own dispatch rule)
        kernel = KERNELS.get(int(torch._fused_sdp_choice(q, k, v, scale=1.0)), "none")
        row = {"step": si, "q": list(q.shape), "k": list(k.shape), "dtype": str(q.dtype).replace("torch.", ""),
               "last_dim_contiguous": q.stride(-1) == k.stride(-1) == v.stride(-1) == 1,
               "k_strides": list(k.stride()), "kernel": kernel}
        kernels.append(row)
        print(f"  step {si:>2}: q {tuple(q.shape)} k {tuple(k.shape)} {row['dtype']}, last dim contiguous "
              f"{row['last_dim_contiguous']}: {kernel}")
    # syncs per step: a plain run and a stylized run on the same one-block model
    vae = build_random_vae(TINY_VAE if check.tiny else VAE_PRESETS["infinity_vae_d32reg"], 0).to(check.device)
    texts = StyleConditioning(*(random_text(n, cfg.text_channels, i) for i, n in enumerate((6, 8, 14))), None, {})
    style = StyleReference(torch.rand(256, 320, 3, generator=torch.Generator().manual_seed(3)))
    refits = []
    refit = KVCache.refit

    def counting(self, capacity, rows=None):
        refits.append(capacity)
        return refit(self, capacity, rows)
    KVCache.refit = counting
    try:
        plain_syncs = per_step_syncs(check, lambda cb: generate(model, texts.generation, sched, [0], SETTINGS,
                                                                 callback=cb))
        plain_refits = len(refits)
        BITS_CACHE.bits(vae, style.image, sched)  # encoded before: the run's own steps are counted
        stylized_syncs = per_step_syncs(check, lambda cb: stylize(model, vae, texts, [style], check.stages, sched, [0],
                                                                   SETTINGS, callback=cb))
        stylized_refits = len(refits) - plain_refits
    finally:
        KVCache.refit = refit
    print(f"host reads per step, plain: {plain_syncs['host_reads']}; stylized: {stylized_syncs['host_reads']}")
    if check.cuda:
        print(f"CUDA synchronisations per step (set_sync_debug_mode), plain: {plain_syncs['cuda_syncs']}; "
              f"stylized: {stylized_syncs['cuda_syncs']}")
    print(f"KV cache moves to new buffers: plain {plain_refits}, stylized {stylized_refits} "
          f"(rows leave after steps {sorted(check.stages.leave_steps())})")
    return {"environment": env, "attention": kernels, "syncs": {"plain": plain_syncs, "stylized": stylized_syncs},
            "kv_cache_refits": {"plain": plain_refits, "stylized": stylized_refits},
            "vae_layouts": {part: str(layout_for(vae, check.device, part)).replace("torch.", "")
                            for part in ("decode", "encode")}}


# --- 2. numerics ---------------------------------------------------------------------------------------

def part_numerics(check: Check) -> dict:
    from golden_cases import case_names, load_case, relative_error
    from safetensors.torch import save_file

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cases, ok = {}, True
    for name in case_names():
        case = load_case(name)
        with tempfile.TemporaryDirectory() as folder:
            save_file(case.part("transformer"), os.path.join(folder, "t.safetensors"))
            torch.save({"vae": {k: v for k, v in case.part("vae").items() if k.startswith(("encoder.", "decoder."))}},
                       os.path.join(folder, "vae.pth"))
            model = load_transformer(os.path.join(folder, "t.safetensors"), device=check.device)
            vae = load_vae(os.path.join(folder, "vae.pth"), device=check.device)
        sched = schedule(case.meta["h_div_w"], case.meta["pn"])
        text = TextBatch(case.f32("text.features"), case.meta["text_lens"])
        logits = model.teacher_forced_logits(text, case.f32("forward.x_wo_prefix").to(check.device), sched).cpu()
        result = {"logits_relative": relative_error(logits, case.f32("forward.logits"))}
        result["bits_off_near_ties"] = replayed_bits_off(model, text, sched, case)
        decoded = vae.decode(case.f32("vae.summed_codes").to(check.device)).cpu()
        result["decode_max_abs"] = (decoded - case.f32("vae.decoded")).abs().max().item()
        latent = vae.encode_latent(case.f32("vae.input").to(check.device)).cpu()
        result["encode_relative"] = relative_error(latent, case.f32("vae.latent"))
        result["pass"] = (result["logits_relative"] <= TOLERANCE["logits"] and result["bits_off_near_ties"] == 0
                          and result["decode_max_abs"] <= TOLERANCE["decode"]
                          and result["encode_relative"] <= TOLERANCE["encode"])
        ok &= result["pass"]
        cases[name] = result
        print(f"{name}: logits {result['logits_relative']:.1e} (<= {TOLERANCE['logits']:.0e}), bits off near-ties "
              f"{result['bits_off_near_ties']}, decode {result['decode_max_abs']:.1e} (<= {TOLERANCE['decode']:.0e}), "
              f"encode {result['encode_relative']:.1e} (<= {TOLERANCE['encode']:.0e}): "
              f"{'pass' if result['pass'] else 'FAIL'}")
    stylized = stylized_against_cpu(check)
    ok &= stylized <= TOLERANCE["stylized_logits"]
    print(f"tiny stylized run, {check.device.type} against CPU: logits {stylized:.1e} "
          f"(<= {TOLERANCE['stylized_logits']:.0e})")
    return {"status": "ok" if ok else "failed: outside tolerance", "tolerance": TOLERANCE, "golden": cases,
            "stylized_vs_cpu_logits_relative": stylized}


def replayed_bits_off(model, text, sched, case) -> int:
    """Bits drawn from the device's logits with the reference's CPU generator, each scale replaying
    the golden bits, that differ from the golden draw outside its near-ties."""
    s = case.meta["sampling"]
    settings = SamplingSettings(cfg=s["cfg"], tau=s["tau"], top_k=s["top_k"], top_p=s["top_p"])
    generator = torch.Generator().manual_seed(s["seed"])
    golden, ties, off = case.per_scale("sample.bits"), case.per_scale("sample.neartie"), [0]

    def choose_bits(si, logits):
        h, w = sched.scales[si]
        drawn = draw_bits(logits[0].cpu(), settings.top_k, settings.top_p, generator).view(1, 1, h, w, -1)
        off[0] += int(((drawn.to(torch.uint8) != golden[si]) & (ties[si] == 0)).sum())
        return golden[si].to(logits.device).view(1, h, w, -1).long()
    run_scales(model, text, sched, settings, choose_bits)
    return off[0]


def stylized_against_cpu(check: Check) -> float:
    """The largest relative logit difference per step between a tiny stylized run on the device and
    on the CPU, the device's run replaying the CPU's bits at every step."""
    cpu_model = build_random_transformer(TINY_TRANSFORMER, 5)
    cpu_vae = build_random_vae(TINY_VAE, 5)
    channels = TINY_TRANSFORMER.text_channels
    texts = StyleConditioning(*(random_text(n, channels, 20 + i) for i, n in enumerate((5, 7, 9))), None, {})
    style = StyleReference(torch.rand(200, 260, 3, generator=torch.Generator().manual_seed(21)))
    sched, stages = schedule(1.0, "0.06M"), Stages(fine_steps=frozenset({4, 5}))
    recorded = []
    choose = style_engine._StyleRun.choose_bits

    def record(self, si, logits):
        bits = choose(self, si, logits)
        recorded.append((logits.cpu(), bits.cpu()))
        return bits
    worst = [0.0]

    def replay(self, si, logits):
        want, bits = recorded[si]
        worst[0] = max(worst[0], ((logits.cpu() - want).abs().max() / want.abs().max()).item())
        return bits.to(logits.device)
    try:
        style_engine._StyleRun.choose_bits = record
        stylize(cpu_model, cpu_vae, texts, [style], stages, sched, [3], SETTINGS)
        style_engine._StyleRun.choose_bits = replay
        device_model = build_random_transformer(TINY_TRANSFORMER, 5)
        device_model = device_model.to(check.device)
        stylize(device_model, cpu_vae.to(check.device), texts, [style], stages, sched, [3], SETTINGS)
    finally:
        style_engine._StyleRun.choose_bits = choose
    return worst[0]


# --- 3. the 2B's shape: plain, stylized, regions ---------------------------------------------------------

class Shapes:
    """The models and inputs of the speed parts, built once."""

    def __init__(self, check: Check, cfg: TransformerConfig):
        self.cfg = cfg
        self.model = build_random_transformer(cfg, 0, device=check.device, dtype=check.dtype)
        vae_cfg = TINY_VAE if check.tiny else VAE_PRESETS["infinity_vae_d32reg"]
        self.vae = build_random_vae(vae_cfg, 0).to(check.device, check.dtype)
        self.sched, self.stages = schedule(1.0, check.pn), check.stages
        C = cfg.text_channels
        self.cond = StyleConditioning(*(random_text(n, C, i) for i, n in enumerate((6, 8, 14))), None, {})
        gen = torch.Generator().manual_seed(10)
        self.styles = [StyleReference(torch.rand(768, 1024, 3, generator=gen)),
                       StyleReference(torch.rand(1024, 1024, 3, generator=gen)),
                       StyleReference(torch.rand(900, 600, 3, generator=gen))]

    def plain(self, model=None):
        return generate(model or self.model, self.cond.generation, self.sched, [0], SETTINGS).summed_codes

    def stylized(self):
        return stylize(self.model, self.vae, self.cond, self.styles[:1], self.stages, self.sched, [0], SETTINGS)

    def regions(self):
        return stylize(self.model, self.vae, self.cond, self.styles, self.stages, self.sched, [0], SETTINGS,
                       regions=Regions())


def plan_line(label: str, run: dict, plan: int) -> str:
    return (f"{label:<9} {run['seconds']:7.3f} s  peak {run['peak_bytes'] / GIB:6.2f} GiB  plan {plan / GIB:6.2f} GiB  "
            f"measured/plan {run['peak_bytes'] / plan:.2f}")


def part_2b(check: Check) -> dict:
    cfg = TINY_TRANSFORMER if check.tiny else PRESETS["infinity_2b"]
    shapes = check.shapes = Shapes(check, cfg)
    counts, b = shapes.sched.token_counts, check.dtype.itemsize
    rows = len(counts)
    plans = {"plain": sampling_bytes(cfg, counts, 2, b),
             "stylized": sampling_bytes(cfg, counts, check.stages.rows_at(rows, 1, True), b),
             "regions": sampling_bytes(cfg, counts, check.stages.rows_at(rows, 3, True), b)}
    for ref in shapes.styles:
        BITS_CACHE.bits(shapes.vae, ref.image, shapes.sched)  # styles encoded once, as when reused
    runs = {kind: timed(check, getattr(shapes, kind)) for kind in ("plain", "stylized", "regions")}
    codes = shapes.plain()
    runs["decode"] = timed(check, lambda: shapes.vae.decode(codes))
    print(f"{'' if check.tiny else 'Infinity-2B shape, '}{check.dtype}, {shapes.sched.image_hw[0]}px, "
          f"median of {check.repeats} (warm-up excluded); peak = most memory added during the run")
    for kind in ("plain", "stylized", "regions"):
        print(plan_line(kind, runs[kind], plans[kind]))
    print(f"decode    {runs['decode']['seconds']:7.3f} s  peak {runs['decode']['peak_bytes'] / GIB:6.2f} GiB "
          f"({layout_for(shapes.vae, check.device, 'decode')})")
    ratios = {"stylized/plain": runs["stylized"]["seconds"] / runs["plain"]["seconds"],
              "regions/plain": runs["regions"]["seconds"] / runs["plain"]["seconds"]}
    print(", ".join(f"{k} {v:.2f}" for k, v in ratios.items()) + f"  ({TARGETS})")
    return {"runs": runs, "plan_bytes": plans, "ratios": ratios, "weights_bytes": weight_bytes(cfg, "bf16")}


# --- 4. batching -----------------------------------------------------------------------------------------

def part_batching(check: Check) -> dict:
    shapes = check.shapes
    sched, images = shapes.sched, 4
    text = TextBatch.cat([random_text(14, shapes.cfg.text_channels, 30 + i) for i in range(images)])

    def steps(rows: list[int]) -> list[float]:
        """Seconds per scale of one pass over `rows` of `text`."""
        generators = make_generators(range(len(rows)), check.device)

        def choose_bits(si, logits):
            h, w = sched.scales[si]
            return torch.stack([draw_bits(lg, SETTINGS.top_k, SETTINGS.top_p, g).view(h, w, -1)
                                for lg, g in zip(logits, generators)])
        stamps = [time.perf_counter()]

        def on_scale(si, summed):
            check.sync()
            stamps.append(time.perf_counter())
        run_scales(shapes.model, text.select(rows), sched, SETTINGS, choose_bits, on_scale=on_scale)
        return [b - a for a, b in zip(stamps, stamps[1:])]
    steps(list(range(images)))  # warm-up
    steps([0])
    batched = [min(t) for t in zip(*(steps(list(range(images))) for _ in range(check.repeats)))]
    single = [min(t) for t in zip(*(steps([0]) for _ in range(check.repeats)))]
    per_scale = [images * s / b for s, b in zip(single, batched)]
    total = images * sum(single) / sum(batched)
    print(f"{images} passes of 1 image / 1 pass of {images}, per scale: " + " ".join(f"{r:.2f}" for r in per_scale))
    print(f"in all: {total:.2f} ({images} x {sum(single):.3f} s against {sum(batched):.3f} s)")
    return {"images": images, "per_scale_speedup": per_scale, "speedup": total,
            "single_pass_seconds": sum(single), "batched_pass_seconds": sum(batched)}


# --- 5. fp8 and Q8_0 -------------------------------------------------------------------------------------

def part_lowbit(check: Check) -> dict:
    shapes = check.shapes
    state = shapes.model.state_dict()
    bf16 = timed(check, shapes.plain)
    base = "fp32" if check.dtype == torch.float32 else "bf16"  # the plan's name of the compute dtype
    results = {base: bf16}
    makers = {
        "fp8_e4m3fn": lambda: transformer_from_state(dict(state), "random fp8", check.device, check.dtype,
                                                     storage=torch.float8_e4m3fn),
        # 2-D weights whose rows split into whole blocks, as write_gguf quantizes them
        "Q8_0": lambda: transformer_from_state({k: quantize_q8_0(v) if v.dim() == 2 and v.shape[1] % 32 == 0 else v
                                                for k, v in state.items()}, "random Q8_0", check.device, check.dtype)}
    for option, make in makers.items():
        model = make()
        results[option] = timed(check, lambda: shapes.plain(model))  # noqa: B023 (called at once)
        model = None
        release(check)
    for option, run in results.items():
        extra = "" if option == base else (f"  time/{base} {run['seconds'] / bf16['seconds']:.2f}, "
                                           f"peak/{base} {run['peak_bytes'] / max(bf16['peak_bytes'], 1):.2f}")
        print(f"{option:<11} {run['seconds']:7.3f} s  peak {run['peak_bytes'] / GIB:6.2f} GiB  weights "
              f"{weight_bytes(shapes.cfg, option) / GIB:5.2f} GiB{extra}")
    return {"runs": results}


# --- 6. the 8B's shape -----------------------------------------------------------------------------------

def part_8b(check: Check) -> dict:
    check.shapes = None
    release(check)
    cfg = TINY_8B_TRANSFORMER if check.tiny else PRESETS["infinity_8b"]
    sched = schedule(1.0, check.pn)
    plan = weight_bytes(cfg, "bf16") + sampling_bytes(cfg, sched.token_counts, 2, check.dtype.itemsize)
    if check.cuda:
        free = torch.cuda.mem_get_info(check.device)[0]
        if plan * 1.1 > free:
            line = f"skipped: the plan needs {plan / GIB:.1f} GiB, {free / GIB:.1f} GiB are free"
            print(line)
            return {"status": line}
    model = build_random_transformer(cfg, 0, device=check.device, dtype=check.dtype)
    text = random_text(14, cfg.text_channels, 1)
    run = timed(check, lambda: generate(model, text, sched, [0], SETTINGS))
    plan_sampling = plan - weight_bytes(cfg, "bf16")
    print(plan_line("8B plain" if not check.tiny else "plain", run, plan_sampling))
    return {"run": run, "plan_bytes": plan_sampling}


PARTS = {"environment": part_environment, "numerics": part_numerics, "2b": part_2b, "batching": part_batching,
         "lowbit": part_lowbit, "8b": part_8b}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true",
                        help="the tiny models at 256px: every part in about 10 s of CPU")
    parser.add_argument("--budget", type=float, default=330.0,
                        help="seconds after which no further part starts (default 330: done within 6 minutes "
                             "on an H100)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per measurement after a warm-up (default 3; 1 with --tiny)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: torch's; 1 with --device cpu --tiny, where more threads only "
                             "add start-up cost)")
    parser.add_argument("--out", default=None, help="folder for the JSON (default: $OUT, else the current folder)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("No CUDA device: run with --device cpu --tiny for the CPU mode.", file=sys.stderr)
        return 2
    if args.threads or (args.tiny and args.device == "cpu"):
        torch.set_num_threads(args.threads or 1)
    check = Check(args)
    check.shapes = None
    for name, part in PARTS.items():
        check.run_part(name, part)
    device = check.results.get("environment", {}).get("environment", {}).get("device", args.device)
    stamp = datetime.date.today().isoformat()
    name = "".join(c if c.isalnum() else "-" for c in f"{device}{'-tiny' if args.tiny else ''}").strip("-")
    folder = args.out or os.environ.get("OUT") or "."
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"gpu_check_{name}_{stamp}.json")
    with open(path, "w") as f:
        json.dump({"args": vars(args), "seconds": check.elapsed(), "parts": check.results}, f, indent=1, default=str)
    print(f"\n{'FAILED' if check.failed else 'done'} in {check.elapsed():.0f} s; wrote {path}")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
