"""Low-VRAM weights: GGUF transformer and T5 files, fp8 storage, and the memory plan.

Tiny random models are written as real GGUF files (quantized by the gguf package) and loaded
through the real loaders. The reference for every quantized model is the fp32 model whose
weights are the file's weights as the gguf package itself decodes them.

The logit error bound (test_gguf_logits_are_within_the_error_their_weights_imply): let W be the
fp32 weights, dW = dequant(quant(W)) - W the weight error the quantizer made (measured per
tensor with gguf's own decoder) and f(W + t dW) the logits along that error. A second-order
Taylor expansion gives f(W + dW) - f(W) = f'(0) + f''(0) / 2 + R, with f'(0) (every layer's
weight error propagated to the logits, to first order) and f''(0) from central differences at
t = +-0.25. The bound asserted per logit is |f(W + dW) - f(W)| <= |f'(0) + f''(0) / 2| + R_max
with R_max = 10% of the largest logit error. Measured on these models: R is 0.1% (Q8_0) and 4%
(Q4_0) of the largest error, which is 0.04 (Q8_0) and 0.9 (Q4_0) for logits up to 4.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

gguf = pytest.importorskip("gguf")  # in requirements.txt: CI always has it

from infinity_core.weights import ggml  # noqa: E402
from infinity_core.errors import CheckpointError, InfinityError  # noqa: E402
from infinity_core.weights.gguf_file import write_gguf  # noqa: E402
from infinity_core.weights.lowbit import Linear as LowBitLinear  # noqa: E402
from infinity_core.memory_plan import GIB, kv_cache_bytes, sampling_bytes, step_bytes, t5_weight_bytes, weight_bytes  # noqa: E402
from infinity_core.network.config import PRESETS  # noqa: E402
from infinity_core.sampler import SamplingSettings, filter_logits, generate, run_scales  # noqa: E402
from infinity_core.schedules import schedule  # noqa: E402
from infinity_core.tiny_t5 import write_tiny_t5  # noqa: E402
from infinity_core.network.transformer import build_random_transformer  # noqa: E402
from infinity_core.weights.t5_files import load_text_encoder  # noqa: E402
from infinity_core.weights.transformer_file import load_transformer  # noqa: E402
from published_layout import llama_cpp_name  # noqa: E402
from tiny import TINY_TRANSFORMER, random_text  # noqa: E402

PLAN = schedule(1.0, "0.06M")


@pytest.fixture(scope="module")
def fp32_state():
    return build_random_transformer(TINY_TRANSFORMER, 0).state_dict()


@pytest.fixture(scope="module")
def gguf_files(fp32_state, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    files = {}
    for qtype in ("Q8_0", "Q4_0"):
        path = str(folder / f"tiny-{qtype}.gguf")
        files[qtype] = (path, write_gguf(path, fp32_state, qtype))
    return files


def reference_weights(path: str, like: dict) -> dict:
    """The file's tensors decoded by the gguf package alone, in torch order, as fp32."""
    out = {}
    for t in gguf.GGUFReader(path).tensors:
        values = gguf.quants.dequantize(np.array(t.data), t.tensor_type)
        out[t.name] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(like[t.name].shape)
    return out


def model_with(state: dict):
    model = build_random_transformer(TINY_TRANSFORMER, 0)
    model.load_state_dict(state)
    return model


def teacher_forced(model) -> torch.Tensor:
    bits = torch.randint(0, 2, (1, sum(PLAN.token_counts[1:]), 32), generator=torch.Generator().manual_seed(3))
    return model.teacher_forced_logits(random_text(6, 1), bits.float() * 2 - 1, PLAN).double()


# --- the GGML decoders --------------------------------------------------------------------------------

def random_blocks(qtype: int, blocks: int, seed: int) -> np.ndarray:
    """Random block bytes whose fp16 scale fields hold ordinary numbers."""
    elements, nbytes = ggml.block_size(qtype)
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(blocks, nbytes), dtype=np.uint8)
    scale_offsets = {ggml.Q6_K: [208], ggml.Q2_K: [80, 82], ggml.Q3_K: [108]}.get(
        qtype, [0, 2] if qtype in (ggml.Q4_1, ggml.Q5_1, ggml.Q4_K, ggml.Q5_K) else [0])
    for offset in scale_offsets:
        raw[:, offset:offset + 2] = rng.uniform(-2, 2, (blocks, 1)).astype(np.float16).view(np.uint8)
    return raw.reshape(2, -1)


@pytest.mark.parametrize("qtype", sorted(ggml.DECODERS) + [ggml.Q2_K], ids=ggml.type_name)
def test_each_decoder_matches_the_gguf_package(qtype):
    raw = random_blocks(qtype, 8, qtype)
    expected = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(qtype))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decoded = ggml.dequantize(torch.from_numpy(raw), qtype, expected.shape)
    assert torch.equal(decoded, torch.from_numpy(expected.astype(np.float32)))
    assert bool(caught) == (qtype not in ggml.DECODERS), "only types decoded outside torch warn"


# --- the transformer from GGUF ------------------------------------------------------------------------

def test_q8_0_made_in_torch_is_the_gguf_packages_byte_for_byte():
    """bench/gpu_check.py makes Q8_0 weights where the gguf package is missing; they must be the
    bytes the package writes, including the halfway values it rounds away from zero."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(48, 256, generator=gen) * 3
    x[0, :32] = 0                                           # an all-zero block: scale 0
    x[1, :32] = torch.full((32,), 0.49999997)
    x[1, 0] = 127                                           # scale 1: 0.49999997 rounds to 0, not 1
    x[2, :32] = torch.arange(32) - 15.5                     # halfway values at scale 1
    x[2, 0] = 127
    want = gguf.quants.quantize(x.numpy(), gguf.GGMLQuantizationType.Q8_0)
    assert np.array_equal(ggml.quantize_q8_0(x).data.numpy(), want)


def test_a_gguf_file_is_recognised_by_its_first_bytes(fp32_state, gguf_files, tmp_path):
    misnamed = tmp_path / "looks_like_a_checkpoint.pth"
    misnamed.write_bytes(open(gguf_files["Q8_0"][0], "rb").read())
    assert load_transformer(str(misnamed)).blocks[0].ffn.fc1.qtype == ggml.Q8_0
    checkpoint_named_gguf = tmp_path / "plain.gguf"
    torch.save(fp32_state, checkpoint_named_gguf)
    assert load_transformer(str(checkpoint_named_gguf)).blocks[0].ffn.fc1.weight.dtype == torch.float32


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_gguf_weights_stay_quantized_on_the_device(gguf_files, qtype):
    path, written = gguf_files[qtype]
    model = load_transformer(path, dtype=torch.bfloat16)
    file_tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    linears = {f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, LowBitLinear)}
    assert len(linears) == 8 + 7 * TINY_TRANSFORMER.depth  # text 4, word embed, AdaLN 2, head; 7 per block
    for name, layer in linears.items():
        assert written[name] == qtype and layer.qtype == gguf.GGMLQuantizationType[qtype], name
        assert layer.weight.dtype == torch.int8 and layer.weight.numel() == file_tensors[name].n_bytes, name
    # the quantized 2-D tensors that are not Linear weights (text table, level embedding) are decoded at load
    assert written["cfg_uncond"] == qtype and model.cfg_uncond.dtype == torch.float32
    assert model.blocks[0].sa.q_bias.dtype == torch.bfloat16 and model.compute_dtype == torch.bfloat16


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_a_gguf_model_computes_exactly_the_dequantized_model(fp32_state, gguf_files, qtype):
    path, _ = gguf_files[qtype]
    expected = teacher_forced(model_with(reference_weights(path, fp32_state)))
    assert torch.equal(teacher_forced(load_transformer(path)), expected)
    # layers that cannot hold blocks (plain torch ones) get every weight decoded at load: same model
    plain = load_transformer(path, operations=torch.nn)
    assert plain.blocks[0].ffn.fc1.weight.dtype == torch.float32 and torch.equal(teacher_forced(plain), expected)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_gguf_logits_are_within_the_error_their_weights_imply(fp32_state, gguf_files, qtype):
    path, _ = gguf_files[qtype]
    delta = {k: v - fp32_state[k] for k, v in reference_weights(path, fp32_state).items()}
    assert max(d.abs().max().item() for d in delta.values()) > 0, "the file must actually be quantized"

    def along(t):  # logits of W + t * dW
        return teacher_forced(model_with({k: fp32_state[k] + t * delta[k] for k in fp32_state}))

    base, step = along(0.0), 0.25
    ahead, behind = along(step), along(-step)
    first = (ahead - behind) / (2 * step)
    second = (ahead + behind - 2 * base) / step ** 2
    predicted = first + second / 2
    error = teacher_forced(load_transformer(path)) - base
    slack = 0.1 * error.abs().max()
    assert error.abs().max() > 1e-3
    assert bool((error.abs() <= predicted.abs() + slack).all())
    assert (error - predicted).abs().max() <= slack  # the expansion explains the error, not just bounds it


def test_q4_0_errs_more_than_q8_0(fp32_state, gguf_files):
    base = teacher_forced(model_with(fp32_state))
    errors = {q: (teacher_forced(load_transformer(gguf_files[q][0])) - base).abs().max() for q in ("Q8_0", "Q4_0")}
    assert errors["Q4_0"] > 4 * errors["Q8_0"] > 0


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_a_gguf_model_samples_the_dequantized_models_bits(fp32_state, gguf_files, qtype):
    path, _ = gguf_files[qtype]
    gguf_model, reference = load_transformer(path), model_with(reference_weights(path, fp32_state))
    text, settings, seeds = random_text(6, 2).select([0, 0]), SamplingSettings(cfg=3.0, tau=1.0), [5, 6]
    sampled = generate(gguf_model, text, PLAN, seeds, settings)
    # what the reference draws with the same seeds when fed the same earlier scales
    drawn = generate(reference, text, PLAN, seeds, settings, replay=sampled.drawn_bits).drawn_bits
    gaps = [(p - q).abs() for p, q in zip(bit_probabilities(gguf_model, text, settings, sampled.drawn_bits),
                                          bit_probabilities(reference, text, settings, sampled.drawn_bits))]
    for si, (ours, theirs, gap) in enumerate(zip(sampled.drawn_bits, drawn, gaps)):
        near_tie = gap > 1e-6  # a uniform draw can fall between the two probabilities only here
        assert torch.equal(ours[~near_tie], theirs[~near_tie]), f"step {si}"
        assert near_tie.float().mean() < 0.01


def bit_probabilities(model, text, settings, replay) -> list:
    """P(bit = 1) as drawn (after CFG, tau and the top-k/top-p filter) at every step, the model
    fed `replay`'s bits."""
    probs = []

    def choose(si, logits):
        pairs = filter_logits(logits.reshape(-1, 2), settings.top_k, settings.top_p)
        probs.append(pairs.softmax(-1)[:, 1].view(replay[si].shape))
        return replay[si]

    run_scales(model, text, PLAN, settings, choose)
    return probs


def test_a_gguf_file_with_other_names_lists_what_it_found(fp32_state, tmp_path):
    renamed = {re.sub(r"^block_chunks\.(\d+)\.module\.(\d+)\.", r"blk.\1.\2.", k): v for k, v in fp32_state.items()}
    renamed = {k.replace("pos_start", "pos_embd"): v for k, v in renamed.items()}
    path = tmp_path / "other-names.gguf"
    write_gguf(str(path), renamed, "Q8_0", arch="infinity_2b")
    with pytest.raises(CheckpointError) as info:
        load_transformer(str(path))
    message = str(info.value)
    assert str(path) in message and "missing: pos_start" in message
    assert "architecture infinity_2b" in message and "pos_embd" in message and "(97 in all)" in message
    assert "must name their tensors as the checkpoint does" in message


def test_without_the_gguf_package_the_error_says_how_to_install_it(gguf_files, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "gguf", None)
    with pytest.raises(InfinityError, match="pip install gguf"):
        load_transformer(gguf_files["Q8_0"][0])


def test_a_truncated_gguf_file_is_refused(gguf_files, tmp_path):
    data = open(gguf_files["Q8_0"][0], "rb").read()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_transformer(str(cut))


# --- fp8 storage ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fp32_file(fp32_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("fp8") / "tiny.safetensors"
    save_file(fp32_state, str(path))
    return str(path)


@pytest.mark.parametrize("compute", [torch.float32, torch.bfloat16])
def test_fp8_stores_the_block_linears_in_8_bits(fp32_state, fp32_file, compute):
    """Block Linear weights: the file's values rounded to fp8; every other block tensor (biases
    included) the file's in the compute dtype; the rest the file's fp32 values."""
    model = load_transformer(fp32_file, dtype=compute, storage=torch.float8_e4m3fn)
    linears = {f"{name}.weight" for name, m in model.named_modules()
               if name.startswith("block_chunks.") and isinstance(m, torch.nn.Linear)}
    for block in ("sa.mat_qkv", "sa.proj", "ca.mat_q", "ca.mat_kv", "ffn.fc1", "ffn.fc2"):
        assert f"block_chunks.0.module.0.{block}.weight" in linears
    for key, value in model.state_dict().items():
        file_value = fp32_state[key]
        if key in linears:
            assert value.dtype == torch.float8_e4m3fn, key
            assert torch.equal(value.float(), file_value.to(torch.float8_e4m3fn).float()), key
        elif key.startswith("block_chunks."):
            assert value.dtype == compute and torch.equal(value, file_value.to(compute)), key
        else:
            assert value.dtype == torch.float32 and torch.equal(value, file_value), key
    assert model.compute_dtype == compute and torch.isfinite(teacher_forced(model)).all()


def test_fp8_with_fp32_compute_is_the_model_with_fp8_rounded_weights(fp32_state, fp32_file):
    rounded = {k: v.to(torch.float8_e4m3fn).float() if k.startswith("block_chunks.") and k.endswith("weight")
               and v.dim() == 2 else v for k, v in fp32_state.items()}
    stored = teacher_forced(load_transformer(fp32_file, storage=torch.float8_e4m3fn))
    assert (stored - teacher_forced(model_with(rounded))).abs().max() < 1e-5  # fp32 rounding order only
    assert (stored - teacher_forced(model_with(fp32_state))).abs().max() > 1e-2


def test_fp8_with_bf16_compute_stays_near_fp32(fp32_state, fp32_file):
    exact = teacher_forced(model_with(fp32_state))
    bf16 = teacher_forced(load_transformer(fp32_file, dtype=torch.bfloat16))
    fp8 = teacher_forced(load_transformer(fp32_file, dtype=torch.bfloat16, storage=torch.float8_e4m3fn))
    # e4m3 keeps 3 mantissa bits to bf16's 7: its error is larger, but of the same kind
    assert (bf16 - exact).abs().max() < (fp8 - exact).abs().max() < 0.25 * exact.abs().max()


# --- T5 from GGUF --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t5") / "flan-t5-tiny"
    write_tiny_t5(str(folder), d_model=128)
    state = load_file(str(folder / "model.safetensors"))
    state.pop("encoder.embed_tokens.weight", None)  # tied to shared.weight
    write_gguf(str(folder / "t5-llama-names-Q8_0.gguf"), {llama_cpp_name(k): v for k, v in state.items()}, "Q8_0",
               arch="t5encoder")
    write_gguf(str(folder / "t5-hf-names-Q4_0.gguf"), state, "Q4_0", arch="t5encoder")
    return folder


@pytest.mark.parametrize("name", ["t5-llama-names-Q8_0.gguf", "t5-hf-names-Q4_0.gguf"])
def test_t5_from_gguf_encodes_as_its_dequantized_weights(t5_folder, name, tmp_path):
    prompts = ["a cat in the snow, watercolor", "red"]
    encoder = load_text_encoder(str(t5_folder / name))
    assert encoder.model.shared.qtype is not None and encoder.model.encoder.embed_tokens is encoder.model.shared
    assert encoder.model.encoder.block[1].layer[1].DenseReluDense.wo.weight.dtype == torch.int8
    # the reference: the same folder with the GGUF's weights decoded by the gguf package, as safetensors
    state = load_file(str(t5_folder / "model.safetensors"))
    decoded = {n: t for n, t in reference_weights(str(t5_folder / name), {
        llama_cpp_name(k) if "llama" in name else k: v for k, v in state.items()}).items()}
    hf_names = {llama_cpp_name(k): k for k in state} if "llama" in name else {k: k for k in state}
    reference = tmp_path / "reference"
    reference.mkdir()
    for f in t5_folder.iterdir():
        if f.suffix != ".gguf":
            (reference / f.name).write_bytes(f.read_bytes())
    full = {hf_names[k]: v for k, v in decoded.items()}
    full["encoder.embed_tokens.weight"] = full["shared.weight"]
    save_file({k: v.clone() for k, v in full.items()}, str(reference / "model.safetensors"))
    got, want = encoder.encode(prompts), load_text_encoder(str(reference)).encode(prompts)
    assert got.lens == want.lens
    assert torch.allclose(got.features, want.features, atol=1e-5)


def test_a_low_bit_linear_computes_in_its_own_compute_dtype():
    """T5's `wo` computes in fp32 in an fp16 run: 4 x 100 x 300 = 120000 is past fp16's 65504."""
    layer = LowBitLinear(4, 2, bias=False)
    layer.weight = torch.nn.Parameter(torch.full((2, 4), 300.0), requires_grad=False)
    layer.compute_dtype = torch.float32
    out = layer(torch.full((1, 4), 100.0, dtype=torch.float16))
    assert out.dtype == torch.float32 and torch.equal(out, torch.full((1, 2), 120000.0))


def test_a_gguf_t5_in_fp16_encodes_as_in_fp32_with_its_ffn_output_in_fp32(t5_folder, tmp_path):
    """FFN output weights scaled so that `wo`'s output passes fp16's 65504 (as flan-t5-xl's does):
    fp16 features stay within fp16 rounding of the fp32 ones because `wo` computes in fp32."""
    state = load_file(str(t5_folder / "model.safetensors"))
    state.pop("encoder.embed_tokens.weight", None)
    loud = {k: v * 1e5 if k.endswith("DenseReluDense.wo.weight") else v for k, v in state.items()}
    folder = tmp_path / "t5"
    folder.mkdir()
    for f in t5_folder.iterdir():
        if f.suffix != ".gguf":
            (folder / f.name).write_bytes(f.read_bytes())
    write_gguf(str(folder / "t5-loud-Q8_0.gguf"), loud, "Q8_0", arch="t5encoder")
    prompts = ["a cat in the snow, watercolor", "red"]
    full = load_text_encoder(str(folder / "t5-loud-Q8_0.gguf"))
    largest = []
    for block in full.model.encoder.block:
        block.layer[1].DenseReluDense.wo.register_forward_hook(lambda m, i, out: largest.append(out.abs().max()))
    want = full.encode(prompts).features
    assert max(largest) > 65504, "wo's output must pass fp16's range for the check to bite"
    got = load_text_encoder(str(folder / "t5-loud-Q8_0.gguf"), dtype=torch.float16).encode(prompts).features
    assert torch.isfinite(got).all()
    assert (got.float() - want).abs().max() < 0.01 * want.abs().max()


def test_a_t5_gguf_that_is_not_that_t5_names_what_it_holds(t5_folder, tmp_path):
    folder = tmp_path / "t5"
    folder.mkdir()
    for f in t5_folder.iterdir():
        if f.suffix != ".gguf":
            (folder / f.name).write_bytes(f.read_bytes())
    write_gguf(str(folder / "clip.gguf"), {"text_model.embeddings.weight": torch.zeros(8, 32)}, "Q8_0", arch="clip")
    with pytest.raises(CheckpointError) as info:
        load_text_encoder(str(folder / "clip.gguf"))
    message = str(info.value)
    assert "missing: shared.weight" in message and "text_model.embeddings.weight" in message and "clip" in message


# --- the memory plan -----------------------------------------------------------------------------------

def stored_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


@pytest.mark.parametrize("option", ["fp32", "bf16", "fp8_e4m3fn", "Q8_0", "Q4_0"])
def test_the_plan_counts_the_bytes_the_loader_keeps(fp32_file, gguf_files, option):
    if option in gguf_files:
        model = load_transformer(gguf_files[option][0], dtype=torch.bfloat16)
    else:
        dtype = torch.float32 if option == "fp32" else torch.bfloat16
        model = load_transformer(fp32_file, dtype=dtype, storage=torch.float8_e4m3fn if option.startswith("fp8") else None)
    assert weight_bytes(TINY_TRANSFORMER, option) == stored_bytes(model)


def test_the_t5_plan_counts_the_bytes_the_gguf_loader_keeps(t5_folder):
    encoder = load_text_encoder(str(t5_folder / "t5-llama-names-Q8_0.gguf"), dtype=torch.bfloat16)
    tiny = dict(d_model=128, inner=2 * 16, d_ff=64, layers=2, vocab=encoder.model.config.vocab_size, buckets=32, heads=2)
    stored = {p.data_ptr(): p.numel() * p.element_size() for p in encoder.model.parameters()}  # shared = embed_tokens
    assert t5_weight_bytes("Q8_0", tiny) == sum(stored.values())


def test_the_plan_for_2b_at_1024px_with_guidance():
    cfg = PRESETS["infinity_2b"]
    counts = schedule(1.0, "1M").token_counts
    cache = kv_cache_bytes(cfg, counts, rows=2)
    assert cache == 2 * 32 * 2048 * 10521 * 2 * 2 and round(cache / GIB, 2) == 5.14
    # the last step (64x64 tokens, 2 rows) in bf16: 24 bytes per channel and token row (step_bytes)
    assert sampling_bytes(cfg, counts, 2) == cache + 2 * 4096 * 24 * 2048
    # 4.1 GiB for 2.2 B values in bf16, plus 0.1 GiB: the text, embedding and head modules stay fp32
    assert round(weight_bytes(cfg, "bf16") / GIB, 1) == 4.2
    assert round(weight_bytes(cfg, "Q8_0") / GIB, 2) < 0.55 * weight_bytes(cfg, "bf16") / GIB
    # flan-t5-xl's encoder: 1.224 B values
    assert [round(t5_weight_bytes(o) / GIB, 2) for o in ("bf16", "Q8_0", "Q4_K")] == [2.28, 1.21, 0.64]


# --- the nodes: Loader choices, and the cache size the sampler hands ComfyUI ------------------------------

@pytest.fixture(scope="module")
def comfy_pack(tmp_path_factory):
    import comfy_stubs
    from infinity_core.tiny import TINY_FILES, write_tiny_models
    from test_nodes import REPO, Pack

    models = tmp_path_factory.mktemp("lowvram_models")
    write_tiny_models(str(models))
    files = {kind: name for kind, (_, name) in TINY_FILES.items()}
    state = load_file(str(models / "infinity" / files["transformer"]))
    write_gguf(str(models / "infinity" / "tiny-Q4_0.gguf"), state, "Q4_0")
    t5 = models / "text_encoders" / files["text_encoder"]
    t5_state = {k: v for k, v in load_file(str(t5 / "model.safetensors")).items() if k != "encoder.embed_tokens.weight"}
    write_gguf(str(t5 / "t5-Q8_0.gguf"), t5_state, "Q8_0", arch="t5encoder")
    with comfy_stubs.installed(REPO, str(models)) as (recorder, modules):
        pack = Pack("infinity_lowvram_comfy")
    pack.recorder, pack.stubs, pack.files = recorder, modules, files
    return pack


def test_the_loader_offers_gguf_files_and_fp8(comfy_pack):
    widgets = {w.name: w for w in comfy_pack.specs["InfinityStyleLoader"].widgets}
    assert "tiny-Q4_0.gguf" in widgets["transformer"].options
    t5 = comfy_pack.files["text_encoder"]
    assert widgets["text_encoder"].options == [t5, f"{t5}/t5-Q8_0.gguf"]
    assert "fp8_e4m3fn" in widgets["precision"].options
    tooltips = {i.id: i.tooltip for i in comfy_pack.nodes["InfinityStyleLoader"].define_schema().inputs}
    assert "infinity_2b bf16: 4.2 + 5.5" in tooltips["transformer"]  # 5.14 GiB of cache + 0.38 of the last step


def test_the_loader_loads_gguf_transformer_and_t5_with_the_packs_ops(comfy_pack):
    model, _, text_encoder = comfy_pack.run("InfinityStyleLoader", **{
        **comfy_pack.files, "transformer": "tiny-Q4_0.gguf",
        "text_encoder": f"{comfy_pack.files['text_encoder']}/t5-Q8_0.gguf"}).args
    layer = model.obj.blocks[0].ffn.fc1
    assert isinstance(layer, comfy_pack.mod("infinity_core.weights.lowbit").Linear)  # ComfyUI-GGUF is not installed here
    assert layer.qtype == gguf.GGMLQuantizationType.Q4_0 and layer.weight.dtype == torch.int8
    assert text_encoder.obj.model.shared.qtype == gguf.GGMLQuantizationType.Q8_0
    assert text_encoder.obj.encode(["a cat"]).features.shape[-1] == 128


def test_fp8_precision_stores_blocks_in_fp8_with_comfyuis_casting_layers(comfy_pack):
    model, _, _ = comfy_pack.run("InfinityStyleLoader", **{**comfy_pack.files, "precision": "fp8_e4m3fn"}).args
    layer = model.obj.blocks[0].sa.mat_qkv
    assert isinstance(layer, comfy_pack.stubs.comfy_ops.manual_cast.Linear)
    assert layer.weight.dtype == torch.float8_e4m3fn and model.obj.compute_dtype == torch.float32


@pytest.mark.parametrize("stylized", [False, True])
def test_the_sampler_hands_comfyui_the_cache_it_will_fill(comfy_pack, monkeypatch, stylized):
    pack = comfy_pack
    transformer = pack.mod("infinity_core.network.transformer")
    peak, steps = [0], set()
    extend = transformer.KVCache.extend

    def recording(self, layer, k, v):
        out = extend(self, layer, k, v)
        peak[0] = max(peak[0], sum(t.numel() * t.element_size() for t in self.keys + self.values))
        steps.add((k.shape[2], k.shape[0]))  # tokens and batch rows of the step
        return out
    monkeypatch.setattr(transformer.KVCache, "extend", recording)
    model, vae, text_encoder = pack.run("InfinityStyleLoader", **pack.files).args
    links = {"model": model, "vae": vae}
    if stylized:
        links["conditioning"] = pack.run("InfinityStyleConditioner", {"text_encoder": text_encoder}).args[0]
        links["stages"] = pack.run("InfinityStyleStageScheduler", fine_steps="4-5").args[0]
        links["styles"] = pack.run("InfinityStyleStyleImageEncoder", {"image": torch.rand(1, 64, 64, 3)}).args[0]
    else:
        links["conditioning"] = pack.run("InfinityStyleTextEncode", {"text_encoder": text_encoder}).args[0]
    pack.run("InfinityStyleSampler", links, pixel_budget="0.06M")
    # the cache's buffers as the run filled them, and the largest step's working set (fp32 here)
    largest_step = max(step_bytes(model.obj.config, tokens, rows, 4) for tokens, rows in steps)
    assert peak[0] > 0 and pack.recorder.memory_required[-1] == peak[0] + largest_step


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_with_comfyui_gguf_installed_a_gguf_file_computes_what_it_computes_without(comfy_pack, gguf_files,
                                                                                 monkeypatch, qtype):
    """ComfyUI-GGUF's layers (a stand-in with its decoding rules) run the transformer when that pack is
    loaded: the logits must be the pack's own layers' to the bit, so the same seed draws the same image."""
    import comfy_stubs

    path, _ = gguf_files[qtype]
    standin = comfy_stubs.comfyui_gguf_ops(comfy_pack.stubs.comfy_ops)
    monkeypatch.setitem(sys.modules, "ComfyUI-GGUF.ops", standin)
    infinity = comfy_pack.stubs.folder_paths.get_folder_paths("infinity")[0]
    shutil.copy(path, os.path.join(infinity, os.path.basename(path)))
    model = comfy_pack.run("InfinityStyleLoader", **{**comfy_pack.files, "transformer": os.path.basename(path)}).args[0]
    layer = model.obj.blocks[0].ffn.fc1
    assert isinstance(layer, standin.GGMLOps.Linear) and isinstance(layer.weight, standin.GGMLTensor)
    assert torch.equal(teacher_forced(model.obj), teacher_forced(load_transformer(path)))


# --- the gguf command ----------------------------------------------------------------------------------

def test_the_gguf_command_writes_files_the_loader_reads(fp32_state, fp32_file, tmp_path):
    from infinity_core.cli import main
    from infinity_core.tiny import TINY_8B_TRANSFORMER
    from infinity_core.weights.sharded import write_sharded

    target = tmp_path / "tiny-Q8_0.gguf"
    assert main(["gguf", fp32_file, str(target), "Q8_0"]) == 0
    expected = teacher_forced(model_with(reference_weights(str(target), fp32_state)))
    assert torch.equal(teacher_forced(load_transformer(str(target))), expected)
    assert not list(tmp_path.glob("*.part"))
    sharded = tmp_path / "tiny-8b"  # the 8B release is a sharded folder
    write_sharded(build_random_transformer(TINY_8B_TRANSFORMER, 1).state_dict(), str(sharded), shards=2)
    assert main(["gguf", str(sharded), str(tmp_path / "tiny-8b-Q4_0.gguf"), "Q4_0"]) == 0
    layer = load_transformer(str(tmp_path / "tiny-8b-Q4_0.gguf")).blocks[3].sa.mat_qkv
    assert layer.qtype == ggml.Q4_0


def test_the_gguf_command_explains_itself_and_its_refusals(fp32_file, tmp_path, capsys):
    from infinity_core.cli import main

    with pytest.raises(SystemExit) as done:
        main(["gguf", "--help"])
    assert done.value.code == 0 and "Q8_0, Q5_1, Q5_0, Q4_1, Q4_0, BF16" in capsys.readouterr().out

    def error(source, target, qtype) -> str:
        """The message the command prints when it refuses, after checking it wrote nothing."""
        assert main(["gguf", str(source), str(target), qtype]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err, err
        assert not target.exists() or target.name == "taken.gguf"
        return err.strip()

    missing = tmp_path / "none.pth"
    assert error(missing, tmp_path / "x.gguf", "Q8_0") == f"error: {missing}: no such file."
    for k_quant, instead in (("Q4_K", "Q4_1"), ("Q5_K", "Q5_1"), ("Q6_K", "Q8_0")):
        message = error(fp32_file, tmp_path / "k.gguf", k_quant)
        assert f"{k_quant} cannot be written here" in message and f"Use {instead} instead" in message
    (tmp_path / "taken.gguf").write_bytes(b"x")
    assert "exists; not overwriting it" in error(fp32_file, tmp_path / "taken.gguf", "Q8_0")
    vae = tmp_path / "vae.safetensors"
    save_file({"encoder.conv_in.conv.weight": torch.zeros(4, 3, 3, 3)}, str(vae))
    assert "this is not an Infinity transformer checkpoint" in error(vae, tmp_path / "from-vae.gguf", "Q8_0")
