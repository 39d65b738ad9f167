"""The boundary between decoders and the detector: the points of the pyramid, the segment coder, what a decoder
returns, the refinement of eqs. 10-12 (and the released code's form of it) and the typed prediction of one video.

Shapes: B batch, T steps of one level, P points over all levels, K classes, N segments.
Every decoder (CLTDR, Trident, ActionFormer) returns one :class:`LevelOutputs` per level; the detector lays them
end to end as :class:`Outputs`. Distances are in units of a point's stride; :func:`distances_to_segments` and
:func:`segments_to_distances` are the one conversion to and from segments in grid steps, used by the label
assignment (targets) and by decoding (predictions) alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


# ------------------------------------------------------------------------------------- points and the coder
class Points(NamedTuple):
    """The points of all levels: point ``i`` sits at grid position ``position[i]`` of level stride ``stride[i]``."""

    position: Tensor  # (P,) t * stride
    stride: Tensor  # (P,)
    reg_min: Tensor  # (P,) the level's regression range, in grid steps
    reg_max: Tensor  # (P,)


def make_points(lengths: Sequence[int], ranges: Sequence[tuple[float, float]], device=None) -> Points:
    """Points for levels of ``lengths[l]`` steps with stride 2^l and regression ranges ``ranges[l]``."""
    parts = []
    for l, (T, (lo, hi)) in enumerate(zip(lengths, ranges)):
        s = 2.0**l
        pos = torch.arange(T, dtype=torch.float32, device=device) * s
        parts.append((pos, torch.full_like(pos, s), torch.full_like(pos, lo), torch.full_like(pos, hi)))
    return Points(*(torch.cat(p) for p in zip(*parts)))


# ------------------------------------------------------------------------------------------ decoder outputs
@dataclass
class LevelOutputs:
    """Raw decoder outputs of one level (logits; distances in units of the level's stride).

    A decoder without refinement leaves ``refine_logits`` / ``refine_offsets`` unset; the refined outputs are
    then the coarse ones.
    """

    cls_logits: Tensor  # (B, T, K) coarse classification (DCM)
    distances: Tensor  # (B, T, K, 2) coarse start / end distances (DRM + Trident), >= 0
    refine_logits: Optional[Tensor] = None  # (B, T, K) refinement R_co of eq. 10
    refine_offsets: Optional[Tensor] = None  # (B, T, 2) R_so, R_eo of eqs. 11-12, or class-wise (B, T, K, 2)


@dataclass(frozen=True)
class Refinement:
    """How a decoder's refinement outputs combine with its coarse ones (eqs. 10-12); the decoder's choice.

    score: 'geometric_mean' is eq. 10, sqrt(a * R_co) of the two probabilities; 'logit_product' is the released
        code's sigmoid(z_a * z_co), the product of the two logits.
    offsets: the units of R_so, R_eo: 'strides' of the point's level (this project's CLTDR decoder) or 'grid'
        steps (the released code, whose offsets are also class-wise).
    clamp: refined distances are kept >= 0 (the released code), so a refined segment still contains its point,
        as every positive's target does.
    """

    score: Literal["geometric_mean", "logit_product"] = "geometric_mean"
    offsets: Literal["strides", "grid"] = "strides"
    clamp: bool = False


def refine_distances(
    distances: Tensor,
    offsets: Tensor,
    clamp: bool = False,
    *,
    position: Optional[Tensor] = None,
    stride: Optional[Tensor] = None,
) -> Tensor:
    """Eqs. 11-12 in distance form: s' = s + R_so and e' = e + R_eo, with s = t - d_s and e = t + d_e.

    distances (B, T, K, 2), offsets (B, T, 2) shared by the classes or class-wise (B, T, K, 2) -> (B, T, K, 2).
    Offsets are in units of the point's stride, unless ``position`` and ``stride`` (broadcastable against
    (B, T, K)) are given: then they are in grid steps and the boundaries are refined as segments, s' = (t -
    d_s * stride) + R_so and d_s' = (t - s') / stride, in the order the released code computes them. With
    ``clamp`` each refined distance is kept >= 0 (see :class:`Refinement`).
    """
    if offsets.dim() == distances.dim() - 1:
        offsets = offsets[:, :, None, :]  # one offset pair for every class
    if position is None or stride is None:
        out = torch.stack([distances[..., 0] - offsets[..., 0], distances[..., 1] + offsets[..., 1]], -1)
    else:
        start = position - distances[..., 0] * stride + offsets[..., 0]
        end = position + distances[..., 1] * stride + offsets[..., 1]
        out = torch.stack([(position - start) / stride, (end - position) / stride], -1)
    return out.clamp(min=0) if clamp else out


def refined_log_prob(
    cls_logits: Tensor, refine_logits: Tensor, score: Literal["geometric_mean", "logit_product"] = "geometric_mean"
) -> Tensor:
    """log of the refined score (:class:`Refinement`), computed stably in log space: eq. 10's sqrt(a * R_co),
    with a, R_co the sigmoids of the logits, or the released code's sigmoid(z_a * z_co)."""
    if score == "logit_product":
        return F.logsigmoid(cls_logits * refine_logits)
    return 0.5 * (F.logsigmoid(cls_logits) + F.logsigmoid(refine_logits))


def segments_to_distances(position: Tensor, stride: Tensor, segments: Tensor) -> Tensor:
    """Encode: segments ``[start, end]`` (..., 2) in grid steps -> distances from the point at ``position``
    (to the start, to the end) in units of its ``stride``; position and stride broadcast against (...)."""
    return torch.stack([position - segments[..., 0], segments[..., 1] - position], -1) / stride[..., None]


def distances_to_segments(position: Tensor, stride: Tensor, distances: Tensor) -> Tensor:
    """Decode, the inverse of :func:`segments_to_distances`: distances (..., 2) -> segments (..., 2)."""
    d = distances * stride[..., None]
    return torch.stack([position - d[..., 0], position + d[..., 1]], -1)


@dataclass
class Outputs:
    """Decoder outputs of all levels, concatenated along points (see :class:`LevelOutputs`).

    Decoders without refinement (ActionFormer, Trident, CLTDR with ``refine`` off for a task) leave the
    refinement unset: the refined score and boundaries then fall back to the coarse ones.
    """

    cls_logits: Tensor  # (B, P, K)
    distances: Tensor  # (B, P, K, 2) coarse, in strides
    refine_logits: Optional[Tensor]  # (B, P, K) or None
    refine_offsets: Optional[Tensor]  # (B, P, 2), class-wise (B, P, K, 2), or None
    mask: Tensor  # (B, P) valid points
    points: Points
    level_sizes: list[int]  # points per level
    refinement: Refinement = Refinement()  # how the refinement applies (the decoder's choice)

    def float(self) -> Outputs:
        """The outputs in fp32 (those computed under autocast in bf16 / fp16), for the losses; itself when they
        are fp32 already."""
        if self.cls_logits.dtype == torch.float32 and self.distances.dtype == torch.float32:
            return self

        def fp32(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.float()

        return dataclasses.replace(
            self,
            cls_logits=self.cls_logits.float(),
            distances=self.distances.float(),
            refine_logits=fp32(self.refine_logits),
            refine_offsets=fp32(self.refine_offsets),
        )

    @property
    def clamp_refined(self) -> bool:
        """Whether refined distances are kept >= 0 (see :func:`refine_distances`)."""
        return self.refinement.clamp

    @property
    def refined(self) -> bool:
        """Whether any output is refined (and the loss mixes refined and coarse terms)."""
        return self.refine_logits is not None or self.refine_offsets is not None

    @property
    def refined_distances(self) -> Tensor:
        if self.refine_offsets is None:
            return self.distances
        if self.refinement.offsets == "strides":
            return refine_distances(self.distances, self.refine_offsets, self.clamp_refined)
        p = self.points
        return refine_distances(
            self.distances,
            self.refine_offsets,
            self.clamp_refined,
            position=p.position[None, :, None],
            stride=p.stride[None, :, None],
        )

    @property
    def refined_log_prob(self) -> Tensor:
        if self.refine_logits is None:
            return F.logsigmoid(self.cls_logits)
        return refined_log_prob(self.cls_logits, self.refine_logits, self.refinement.score)

    def segments(self) -> Tensor:
        """The refined class-wise segments of every point, (B, P, K, 2) in grid steps."""
        return distances_to_segments(
            self.points.position[None, :, None], self.points.stride[None, :, None], self.refined_distances
        )

    def dense_prediction(self) -> tuple[Tensor, Tensor, Tensor]:
        """Refined probabilities (B, P, K), class-wise segments (B, P, K, 2) and valid points (B, P)."""
        return self.refined_log_prob.exp(), self.segments(), self.mask


class VideoPrediction(NamedTuple):
    """One video's pre-NMS prediction, per level l, over its valid steps only (padding never reaches it)."""

    scores: list[Tensor]  # [(T_l, K)] refined class probabilities
    segments: list[Tensor]  # [(T_l, K, 2)] class-wise [start, end] in grid steps

    def cpu(self) -> VideoPrediction:
        """On the CPU in fp32, as post-processing takes it."""
        return VideoPrediction([s.float().cpu() for s in self.scores], [s.float().cpu() for s in self.segments])


def level_lengths(num_steps: int, num_levels: int) -> list[int]:
    """Steps of each pyramid level for an input of ``num_steps`` steps: ceil(T / 2^l)."""
    return [-(-num_steps // 2**l) for l in range(num_levels)]


def split_videos(scores: Tensor, segments: Tensor, mask: Tensor, level_sizes: Sequence[int]) -> list[VideoPrediction]:
    """A batch's dense prediction -> one :class:`VideoPrediction` per video, each level cut to its valid steps.

    scores (B, P, K), segments (B, P, K, 2), mask (B, P) valid points, ``level_sizes`` points per level (sum P).
    The one split of :meth:`Detector.predict` and of an exported network's outputs (``cltdr.deploy``).
    """
    if sum(level_sizes) != scores.shape[1]:
        raise ValueError(f"levels of {list(level_sizes)} points do not add up to the prediction's {scores.shape[1]}")
    sizes = list(level_sizes)
    n_valid = mask.view(mask.shape[0], -1).split(sizes, 1)  # [(B, T_l)]
    counts = torch.stack([m.sum(1) for m in n_valid], 1).tolist()  # (B, L): one host sync for the batch
    return [
        VideoPrediction(
            [sc[:n] for sc, n in zip(scores[b].split(sizes), per_level)],
            [sg[:n] for sg, n in zip(segments[b].split(sizes), per_level)],
        )
        for b, per_level in enumerate(counts)
    ]
