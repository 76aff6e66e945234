"""The KV cache: each scale's keys and values are written into buffers made once per row segment
(the reference concatenated, copying the whole cache at every scale), and what attention reads is
exactly what concatenation would have given."""
import pytest
import torch

from infinity_core.memory_plan import kv_cache_bytes
from infinity_core.network import transformer
from infinity_core.network.transformer import KVCache
from infinity_core.sampler import SamplingSettings, generate
from infinity_core.schedules import schedule
from infinity_core.style import Stages, StyleConditioning, StyleReference, stylize
from tiny import random_image, random_text, tiny_models

PLAN = schedule(1.0, "0.25M")  # 10 steps: the default stages fit


def test_the_views_hold_what_concatenation_gives():
    gen = torch.Generator().manual_seed(0)
    cache, keys, values = KVCache(capacity=1 + 4 + 9), [], []
    for tokens in (1, 4, 9):
        k, v = (torch.randn(3, 2, tokens, 8, generator=gen) for _ in range(2))
        keys.append(k)
        values.append(v)
        got_k, got_v = cache.extend(0, k, v)
        assert torch.equal(got_k, torch.cat(keys, dim=2)) and torch.equal(got_v, torch.cat(values, dim=2))
    with pytest.raises(RuntimeError, match="sized for 14 tokens"):
        cache.extend(0, k, v)


def test_rows_that_stay_keep_their_keys_in_the_new_buffers():
    gen = torch.Generator().manual_seed(1)
    cache = KVCache(capacity=5)
    k, v = torch.randn(4, 2, 5, 8, generator=gen), torch.randn(4, 2, 5, 8, generator=gen)
    cache.extend(0, k[:, :, :2], v[:, :, :2])
    cache.refit(7, rows=[3, 1])
    assert cache.keys[0].shape == (2, 2, 7, 8)
    got_k, got_v = cache.extend(0, k[[3, 1], :, 2:], v[[3, 1], :, 2:])
    assert torch.equal(got_k, k[[3, 1]]) and torch.equal(got_v, v[[3, 1]])


def buffers_of_run(monkeypatch, run) -> list[dict]:
    """Per layer-0 call of KVCache.extend: the buffer's address, rows and capacity."""
    seen = []
    extend = KVCache.extend

    def recording(self, layer, k, v):
        out = extend(self, layer, k, v)
        if layer == 0:
            buffer = self.keys[0]
            seen.append((buffer.data_ptr(), buffer.shape[0], buffer.shape[2]))
        return out
    monkeypatch.setattr(transformer.KVCache, "extend", recording)
    run()
    return seen


def test_a_plain_run_makes_its_buffers_once(monkeypatch):
    model, _ = tiny_models()
    seen = buffers_of_run(monkeypatch, lambda: generate(model, random_text(5, 1), PLAN, [0], SamplingSettings()))
    assert len(seen) == len(PLAN)
    assert set(seen) == {(seen[0][0], 2, sum(PLAN.token_counts))}  # one buffer, every token, 2 rows (CFG)


def test_a_stylized_run_makes_new_buffers_only_where_rows_leave(monkeypatch):
    model, vae = tiny_models()
    cond = StyleConditioning(random_text(4, 2), random_text(5, 3), random_text(6, 4), None, {})
    style = StyleReference(random_image(64, 80, 5))
    seen = buffers_of_run(monkeypatch, lambda: stylize(model, vae, cond, [style], Stages(), PLAN, [0]))
    counts = PLAN.token_counts
    # style rows leave after the last key step (3), the content row after the last fine step (7)
    segments = [(6, sum(counts[:4])), (4, sum(counts[:8])), (2, sum(counts))]
    assert [(rows, capacity) for _, rows, capacity in seen] == [segments[0]] * 4 + [segments[1]] * 4 + [segments[2]] * 2
    assert len({ptr for ptr, _, _ in seen}) == 3
    # the plan the nodes hand ComfyUI is the largest of these buffers
    cfg = model.config
    assert kv_cache_bytes(cfg, counts, Stages().rows_at(len(PLAN), 1, True), 4) == \
        max(2 * cfg.depth * cfg.embed_dim * 4 * rows * capacity for rows, capacity in segments)
