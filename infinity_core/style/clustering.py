"""Regions of one image from the model's features: spherical k-means on cosine similarity, with
the number of regions chosen by the silhouette (cosine distance).

Plain torch and deterministic: every random choice draws from a generator with a fixed seed, so
the same features always give the same regions.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MAX_REGIONS = 8
PCA_DIMS = 32        # features are projected on their leading components before clustering
RESTARTS = 4         # k-means runs per k, from different k-means++ starts; the tightest is kept
ITERATIONS = 30


@dataclass
class Segmentation:
    labels: torch.Tensor   # [h, w] long, regions numbered 0.. in raster order of first appearance
    count: int
    silhouettes: dict      # k -> mean silhouette, for the k tried (empty when k was given)


def prepare(features: torch.Tensor) -> torch.Tensor:
    """[N, C] features -> [N, D] unit rows: each channel standardised over the image, projected on
    the leading principal components (less noise, cheaper distances)."""
    x = features.float()
    x = (x - x.mean(0)) / x.std(0, unbiased=False).clamp_min(1e-6)
    # principal components from the [N, N] Gram matrix: cheaper than an SVD when C > N
    variance, vectors = torch.linalg.eigh(x @ x.T)
    dims = min(PCA_DIMS, *x.shape)
    top = variance.flip(0)[:dims].clamp_min(0).sqrt()
    return F.normalize(vectors.flip(1)[:, :dims] * top, dim=1)


def _plus_plus(x: torch.Tensor, k: int, runs: int, generator: torch.Generator) -> torch.Tensor:
    """[runs, k, D] k-means++ starts: each next centre drawn with probability ~ squared cosine
    distance to the nearest centre so far."""
    centres = x[torch.randint(len(x), (runs,), generator=generator)][:, None]
    for _ in range(1, k):
        distance = (1 - torch.einsum("nd,rkd->rnk", x, centres).amax(2)).clamp_min(0)
        weights = distance.square() + 1e-12  # all zero only if fewer distinct points than k
        centres = torch.cat([centres, x[torch.multinomial(weights, 1, generator=generator)[:, 0]][:, None]], 1)
    return centres


def kmeans(x: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """Labels [N] of spherical k-means on unit rows x [N, D]: the tightest of RESTARTS runs (run
    side by side; largest summed cosine to the own centre)."""
    generator = torch.Generator().manual_seed(seed)
    centres = _plus_plus(x, k, RESTARTS, generator)
    labels = None
    for _ in range(ITERATIONS):
        assigned = torch.einsum("nd,rkd->rnk", x, centres).argmax(2)                # [runs, N]
        if labels is not None and torch.equal(assigned, labels):
            break
        labels = assigned
        sums = torch.einsum("rnk,nd->rkd", F.one_hot(labels, k).float(), x)
        centres = torch.where(sums.norm(dim=2, keepdim=True) == 0, centres, F.normalize(sums, dim=2))
    similarity = torch.einsum("nd,rkd->rnk", x, centres)
    fit = similarity.amax(2).sum(1)
    return similarity[fit.argmax()].argmax(1)


def silhouette(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean silhouette of a labelling of unit rows x, on cosine distance (a token alone in its
    region scores 0, as usual)."""
    distance = (1 - x @ x.T).clamp_min(0)
    ids = labels.unique()
    onehot = (labels[:, None] == ids[None]).float()                        # [N, k]
    sizes = onehot.sum(0)
    mean_to = distance @ onehot                                           # [N, k] summed distances
    own = onehot.bool()
    own_size = (sizes[None] * onehot).sum(1)
    a = (mean_to * onehot).sum(1) / (own_size - 1).clamp_min(1)
    b = (mean_to / sizes[None]).masked_fill(own, float("inf")).amin(1)
    s = (b - a) / torch.maximum(a, b).clamp_min(1e-12)
    return s.masked_fill(own_size <= 1, 0).mean().item()


def _raster_order(labels: torch.Tensor) -> torch.Tensor:
    """Renumber regions 0, 1, ... in the raster order of their first token."""
    order = []
    for label in labels.tolist():
        if label not in order:
            order.append(label)
    lookup = torch.empty(int(labels.max()) + 1, dtype=torch.long)
    lookup[torch.tensor(order)] = torch.arange(len(order))
    return lookup[labels]


@contextlib.contextmanager
def _one_thread():
    """Clustering is many small ops on a few hundred tokens: extra threads only add overhead (10x
    slower with 2 threads on a busy 2-core machine), so it runs on one and gives the rest back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def segment(features: torch.Tensor, count: int | None = None, max_regions: int = MAX_REGIONS) -> Segmentation:
    with _one_thread():
        return _segment(features, count, max_regions)


def _segment(features: torch.Tensor, count: int | None, max_regions: int) -> Segmentation:
    """Regions of an image from its features [h, w, C].

    count None: every k from 2 to max_regions is tried and the one with the highest mean
    silhouette wins (ties go to the smaller k). A given count is used as is (1 = the whole image)."""
    h, w, _ = features.shape
    n = h * w
    if count == 1 or n < 3:
        return Segmentation(torch.zeros(h, w, dtype=torch.long), 1, {})
    x = prepare(features.reshape(n, -1))
    if count is not None:
        labels = kmeans(x, min(count, n))
        return Segmentation(_raster_order(labels).view(h, w), int(labels.unique().numel()), {})
    tried = {}
    best = None
    for k in range(2, min(max_regions, n - 1) + 1):
        labels = kmeans(x, k)
        tried[k] = silhouette(x, labels)
        if best is None or tried[k] > tried[best[0]]:
            best = (k, labels)
    labels = _raster_order(best[1])
    return Segmentation(labels.view(h, w), int(labels.max()) + 1, tried)
