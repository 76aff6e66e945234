"""Semantic style regions: each region of the content is stylized by the region of the style
images it resembles, with no masks (StyleGallery's idea, in Infinity's scale-wise attention).

1. Features. The content path depends on no other path, so it runs ahead alone to a finer step
   (the last fine step by default), drawing with the run's seed; the stylized run then replays
   its bits, as it replays a content image's. Style images (and a content image) are
   teacher-forced to the same step. All passes use the content prompt, so every image is read
   under the same conditioning. A token's feature is the mean, over the chosen blocks, of its
   self-attention values (unit length per block; values carry no RoPE rotation).
2. Regions. Each image's features are clustered (clustering.segment): the number of regions is
   the silhouette's choice among 2..8, or given.
3. Matching. Each content region takes the (style, style region) with the best score:
   cosine of the centroids (features centred on the mean over all images) + position_weight x
   closeness of the centroids' positions (1 - distance / sqrt 2) + PRIOR_TEMPERATURE x
   log(style weight). A style with a mask is not matched: its mask decides where it goes.
4. Stylization, at key steps, through the key stage's per-style log-bias:
   - every style key: + log(weight) (as in the global mix); a masked style + log(mask), the
     others + log(1 - the masks' cover): where a mask covers a token, the mask decides;
   - soft: a key gets log(1 - d + d*A), A the overlap of the key's style region with the
     region matched by the query token (1 inside, 0 for other regions and styles) and
     d = 1 - exp(-strength): keys outside the match lose `strength` nats; 0 is the global mix;
   - hard: the soft bias plus log(P), P the token's share of regions matched to that style,
     so styles outside the token's match get -inf.
   Feature Initialization takes, per position, the style with the largest share (weight x P,
   or weight x mask), the multi-style rule of the global mix. Adaptive Query Sharing is unchanged.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import InfinityError
from ..images import preview_image
from ..network.quantizer import summed_codes
from ..network.text import TextBatch
from ..network.transformer import AttentionCall, plain_attention
from ..sampler import SamplingSettings, draw_bits, make_generators, run_scales
from ..schedules import Schedule
from .clustering import MAX_REGIONS, Segmentation, segment
from .references import BITS_CACHE, mask_on_grid, object_token, tensor_digest
from .stages import Stages

PRIOR_TEMPERATURE = 0.1  # a style weight w adds 0.1*log(w) to its regions' scores (w=2: +0.07)
STRENGTH_RANGE = (0.0, 10.0)        # nats a key outside the match loses; the node's widget limits
POSITION_WEIGHT_RANGE = (0.0, 2.0)


@dataclass(frozen=True)
class Regions:
    """Settings of semantic style regions. count None = chosen by the silhouette (2..8)."""
    count: Optional[int] = None
    hard: bool = False
    strength: float = 3.0
    position_weight: float = 0.25
    feature_step: Optional[int] = None   # None: the last fine step (or the last key step)
    layers: Optional[tuple[int, int]] = None  # inclusive block range; None: the middle half

    def check(self) -> None:
        """The settings themselves, before anything loads."""
        if self.count is not None and not 1 <= self.count <= MAX_REGIONS:
            raise InfinityError(f"Regions must be auto or 1-{MAX_REGIONS}, got {self.count}.")
        for what, value, (low, high) in (("region strength", self.strength, STRENGTH_RANGE),
                                          ("position weight", self.position_weight, POSITION_WEIGHT_RANGE)):
            if not low <= value <= high:  # NaN too
                raise InfinityError(f"The {what} must be from {low:g} to {high:g}, got {value}.")

    def validate(self, schedule: Schedule, depth: int) -> None:
        self.check()
        if self.feature_step is not None and not 0 <= self.feature_step < len(schedule):
            raise InfinityError(f"The region feature step {self.feature_step} is out of range: this schedule "
                                f"has steps 0-{len(schedule) - 1}.")
        if self.layers is not None and not 0 <= self.layers[0] <= self.layers[1] < depth:
            raise InfinityError(f"Region feature layers {self.layers[0]}-{self.layers[1]} do not fit this "
                                f"model's {depth} blocks (0-{depth - 1}).")

    def step_for(self, stages: Stages) -> int:
        if self.feature_step is not None:
            return self.feature_step
        return max(stages.fine_steps or stages.key_steps)

    def layers_for(self, depth: int) -> tuple[int, int]:
        return self.layers or (depth // 4, max(depth // 4, 3 * depth // 4 - 1))


@dataclass(frozen=True)
class Match:
    """Content region -> the style (index among the run's styles) and style region that paint it."""
    region: int
    style: int
    style_region: int
    score: float


@dataclass
class RegionPlan:
    """The regions of one stylized image: found before it runs, drawn by the region map."""
    content: Segmentation
    styles: list            # per style, its Segmentation (None for a masked style)
    matches: list           # per content region, its Match (empty when every style is masked)
    content_bits: Optional[list]  # the content path's bits per step, replayed by the stylized run


class FeatureProbe:
    """An attention control that changes nothing and keeps, for every row, the mean over the
    chosen blocks of each current token's self-attention values (unit length per block)."""

    def __init__(self, step: int, layers: tuple[int, int]):
        self.step, self.layers = step, layers
        self.sum: Optional[torch.Tensor] = None

    def __call__(self, q, k, v, call: AttentionCall):
        if call.step == self.step and self.layers[0] <= call.layer <= self.layers[1]:
            tokens = q.shape[2]
            current = v[:, :, -tokens:].transpose(1, 2).flatten(2).float()  # [B, L, H*hd]
            current = F.normalize(current, dim=-1)
            self.sum = current if self.sum is None else self.sum + current
        return plain_attention(q, k, v)

    def features(self, grid) -> torch.Tensor:
        """[B, h, w, C] on the CPU."""
        count = self.layers[1] - self.layers[0] + 1
        return (self.sum / count).view(self.sum.shape[0], *grid, -1).cpu()


def _run_to(model, text: TextBatch, schedule: Schedule, settings, choose_bits, last_step: int, probe: FeatureProbe,
            negative=None) -> torch.Tensor:
    with model.controlled_attention(probe):
        run_scales(model, text, schedule, settings, choose_bits, negative=negative, last_step=last_step)
    return probe.features(schedule.scales[probe.step])


def sample_content_ahead(model, cond, schedule: Schedule, seed: int, settings: SamplingSettings, until: int,
                         step: int, layers) -> tuple[list, torch.Tensor]:
    """The content path alone through step `until`, drawing as the stylized run's content row
    would (its own generator, the same seed): its bits per step and its features at `step`."""
    generator = make_generators([seed], model.device)[0]
    drawn = []

    def choose_bits(si, logits):
        h, w = schedule.scales[si]
        bits = draw_bits(logits[0], settings.top_k, settings.top_p, generator).view(1, h, w, -1)
        drawn.append(bits[0].cpu())
        return bits
    probe = FeatureProbe(step, layers)
    features = _run_to(model, cond.content, schedule, settings, choose_bits, until, probe, negative=cond.negative)
    return drawn, features[0]


class ImageFeatures:
    """One image's features [h, w, C] and its segmentations by region count, made once."""

    def __init__(self, features: torch.Tensor):
        self.features = features
        self._segmentations: dict = {}

    def segment(self, count: Optional[int]) -> Segmentation:
        if count not in self._segmentations:
            self._segmentations[count] = segment(self.features, count)
        return self._segmentations[count]


class FeatureCache:
    """Features of teacher-forced images, by (image, model, text, schedule, step, layers): a style
    reused across seeds or runs is read once."""

    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self._entries: OrderedDict = OrderedDict()
        self.passes = 0  # how many teacher-forced passes ran, for tests and benchmarks

    def features(self, model, vae, text: TextBatch, images: Sequence[torch.Tensor], schedule: Schedule, step: int,
                 layers) -> list[ImageFeatures]:
        """Per image, its features; the images not cached yet go through the model in one batch."""
        context = (object_token(model), tensor_digest(text.features), tuple(text.lens), schedule.scales, step, layers)
        keys = [(tensor_digest(image), object_token(vae)) + context for image in images]
        missing = list(dict.fromkeys(k for k in keys if k not in self._entries))
        if missing:
            first = {k: image for k, image in zip(keys, images)}
            bits = [BITS_CACHE.bits(vae, first[k], schedule) for k in missing]

            def choose_bits(si, logits):
                h, w = schedule.scales[si]
                return torch.stack([b[si].view(h, w, -1) for b in bits]).to(logits.device).long()
            probe = FeatureProbe(step, layers)
            batch = TextBatch.cat([text] * len(missing))
            found = _run_to(model, batch, schedule, SamplingSettings(cfg=1.0), choose_bits, step, probe)
            self.passes += 1
            for key, value in zip(missing, found):
                self._entries[key] = ImageFeatures(value)
        for key in keys:
            self._entries.move_to_end(key)
        out = [self._entries[key] for key in keys]
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return out


FEATURE_CACHE = FeatureCache()


def _positions(labels: torch.Tensor, count: int) -> torch.Tensor:
    """[count, 2] centroid (row, column) of each region, in [0, 1] of the image."""
    h, w = labels.shape
    rows = (torch.arange(h, dtype=torch.float32)[:, None] + 0.5).expand(h, w) / h
    cols = (torch.arange(w, dtype=torch.float32)[None] + 0.5).expand(h, w) / w
    onehot = F.one_hot(labels.flatten(), count).float()
    return (onehot.T @ torch.stack([rows.flatten(), cols.flatten()], 1)) / onehot.sum(0)[:, None].clamp_min(1)


def _centroids(features: torch.Tensor, labels: torch.Tensor, count: int, mean: torch.Tensor) -> torch.Tensor:
    onehot = F.one_hot(labels.flatten(), count).float()
    sums = onehot.T @ (features.reshape(-1, features.shape[-1]) - mean)
    return F.normalize(sums, dim=1)


def match_regions(content_features: torch.Tensor, content: Segmentation, style_features: Sequence[Optional[torch.Tensor]],
                  styles: Sequence[Optional[Segmentation]], weights: Sequence[float],
                  position_weight: float) -> list[Match]:
    """Per content region, the best (style, style region) over the styles given (None: skipped)."""
    candidates = [i for i, seg in enumerate(styles) if seg is not None]
    if not candidates:
        return []
    every = [content_features] + [style_features[i] for i in candidates]
    mean = torch.cat([f.reshape(-1, f.shape[-1]) for f in every]).mean(0)
    c_feat = _centroids(content_features, content.labels, content.count, mean)
    c_pos = _positions(content.labels, content.count)
    best: list = [None] * content.count
    for i in candidates:
        seg = styles[i]
        cosine = c_feat @ _centroids(style_features[i], seg.labels, seg.count, mean).T            # [Rc, Rs]
        closeness = 1 - torch.cdist(c_pos, _positions(seg.labels, seg.count)) / math.sqrt(2)
        score = cosine + position_weight * closeness + PRIOR_TEMPERATURE * math.log(weights[i])
        value, where = score.max(1)
        for r in range(content.count):
            if best[r] is None or value[r].item() > best[r].score:
                best[r] = Match(r, i, int(where[r]), value[r].item())
    return best


def region_fractions(labels: torch.Tensor, count: int, grid) -> torch.Tensor:
    """[count, h, w]: the share of each cell of an (h, w) grid that each region covers."""
    onehot = F.one_hot(labels, count).permute(2, 0, 1).float()
    return F.adaptive_avg_pool2d(onehot[None], grid)[0]


def check_region_styles(styles: Sequence) -> None:
    """Refuse styles semantic regions cannot match (StyleReference: image, weight, mask), before
    anything runs: every style left out, or one with neither an image nor a mask."""
    left_out = [s.weight == 0 or (s.mask is not None and float(s.mask.max()) <= 0) for s in styles]
    if styles and all(left_out) and any(s.image is not None for s in styles):
        raise InfinityError(f"Semantic regions match the content to regions of style images, but every style is left "
                            f"out ({len(styles)} with weight 0 or an all-black mask). Give a style a weight above 0, "
                            "or use the global mix.")
    for i, (ref, out) in enumerate(zip(styles, left_out)):
        if ref.image is None and ref.mask is None and not out:
            raise InfinityError(f"Semantic regions match the content to regions of style images, and style {i + 1} "
                                "has none (a style in words only). Give it an image or a mask, or use the global mix.")


def plan_regions(model, vae, cond, styles, stages: Stages, schedule: Schedule, seed: int,
                 settings: SamplingSettings, content_image, regions: Regions) -> RegionPlan:
    """Find and match the regions of one stylized image. `styles` are the run's active
    (StyleReference, fitted mask or None) pairs, checked by check_region_styles."""
    step, layers = regions.step_for(stages), regions.layers_for(model.config.depth)
    matched = [ref.image is not None and mask is None for ref, mask in styles]
    images = [ref.image for (ref, _), m in zip(styles, matched) if m]
    if content_image is None:
        until = max(step, stages.content_needed_until())
        content_bits, sampled = sample_content_ahead(model, cond, schedule, seed, settings, until, step, layers)
        content_features = ImageFeatures(sampled)
        found = FEATURE_CACHE.features(model, vae, cond.content, images, schedule, step, layers)
    else:
        content_bits = None
        content_features, *found = FEATURE_CACHE.features(model, vae, cond.content, [content_image] + images,
                                                          schedule, step, layers)
    found = iter(found)
    style_features = [next(found) if m else None for m in matched]
    segs = [None if f is None else f.segment(regions.count) for f in style_features]
    matches = match_regions(content_features.features, content_features.segment(regions.count),
                            [None if f is None else f.features for f in style_features], segs,
                            [ref.weight for ref, _ in styles], regions.position_weight)
    return RegionPlan(content_features.segment(regions.count), segs, matches, content_bits)


def content_preview(vae, content_bits: list, schedule: Schedule, step: int) -> torch.Tensor:
    """The content path's image as it stood at `step` (the picture its regions were found in when
    no content image is given): [1, h*16, w*16, 3] in [0, 1], decoded at that step's grid."""
    scales = schedule.scales[:step + 1]
    return preview_image(vae, summed_codes([bits[None] for bits in content_bits[:step + 1]], scales), scales[-1])


class StyleRegions:
    """A regions run's plan with its styles (the run's active (StyleReference, fitted mask) pairs):
    the styles' shares and key-stage biases per grid, and what the region map draws.
    `content_picture()` gives the picture the content regions were found in (IMAGE, [0, 1]); it is
    made only when the map is drawn."""

    def __init__(self, plan: RegionPlan, styles, regions: Regions, schedule: Schedule,
                 content_picture: Callable[[], torch.Tensor]):
        self.plan, self.styles, self.regions, self.schedule = plan, styles, regions, schedule
        self.content_picture = content_picture

    def _cover(self, grid) -> torch.Tensor:
        """How much of each cell the styles' masks cover (the largest), [h, w]."""
        cover = torch.zeros(grid)
        for _, mask in self.styles:
            if mask is not None:
                cover = torch.maximum(cover, mask_on_grid(mask, grid))
        return cover

    def _painted(self, grid, style: int, style_region: Optional[int] = None) -> torch.Tensor:
        """[h, w]: the share of each cell in content regions matched to `style` (and to its
        `style_region`, if given), pooled from the region map so that full cells are exactly 1."""
        painted = [m.region for m in self.plan.matches
                   if m.style == style and style_region in (None, m.style_region)]
        inside = torch.isin(self.plan.content.labels, torch.tensor(painted, dtype=torch.long)).float()
        return F.adaptive_avg_pool2d(inside[None, None], grid)[0, 0]

    def shares(self, grid) -> list[torch.Tensor]:
        """Per style, weight x its share of each cell [h, w]: mask, or matched regions outside masks."""
        free = 1 - self._cover(grid)
        return [ref.weight * (mask_on_grid(mask, grid) if mask is not None else free * self._painted(grid, i))
                for i, (ref, mask) in enumerate(self.styles)]

    def _style_key_fractions(self, seg: Segmentation, step: int) -> torch.Tensor:
        """[R_style, L]: region fractions of a style's keys at `step` (its tokens of steps 0..step)."""
        return torch.cat([region_fractions(seg.labels, seg.count, grid).flatten(1)
                          for grid in self.schedule.scales[:step + 1]], dim=1)

    def key_bias(self, step: int) -> list[Optional[torch.Tensor]]:
        """Per style, the log-bias of its keys at a key step: [L_q] (the same for all its keys),
        [L_q, L_style], or None (no change)."""
        grid = self.schedule.scales[step]
        free = (1 - self._cover(grid)).flatten()
        pull = 1 - math.exp(-self.regions.strength)  # d: the share keys outside the match lose
        biases = []
        for i, (ref, mask) in enumerate(self.styles):
            if mask is not None:
                base = (ref.weight * mask_on_grid(mask, grid)).flatten().log()
                biases.append(_plain(base))
                continue
            base = math.log(ref.weight) + free.log()
            if self.regions.hard:
                base = base + self._painted(grid, i).flatten().log()
            seg = self.plan.styles[i]
            if pull == 0 or seg is None:
                biases.append(_plain(base))
                continue
            style_keys = self._style_key_fractions(seg, step)
            overlap = sum(self._painted(grid, i, rho).flatten()[:, None] * style_keys[rho][None]
                          for rho in range(seg.count))
            region = torch.log1p(-pull * (1 - overlap).clamp(0, 1))
            biases.append(_plain(base) if not region.any() else base[:, None] + region)
        return biases


def _plain(bias: torch.Tensor) -> Optional[torch.Tensor]:
    """None for a bias of zeros (so an unbiased style attends exactly as without a bias)."""
    return None if not bias.any() else bias
