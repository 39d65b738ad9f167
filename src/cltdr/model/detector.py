"""The detector: encoder -> per-level decoder -> loss (training) or decoded scores and segments (inference).

Shapes: B batch, C input channels, T input steps, P points over all levels, K classes.
The detector owns what every encoder/decoder pair shares: running heads over levels, label assignment,
the loss and its normaliser, and decoding distances into segments on the feature grid. Any encoder (L levels
from (B, C, T)) fits any decoder (a :class:`LevelOutputs` per level); see ``build_detector``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cltdr.config import LossConfig, pyramid_divisor
from cltdr.model.assigner import Targets, assign
from cltdr.model.losses import distance_iou, iou_loss, sigmoid_focal_loss, varifocal_loss
from cltdr.model.outputs import LevelOutputs, Outputs, Refinement, VideoPrediction, make_points, split_videos
from cltdr.utils.distributed import global_sum


def update_normalizer(running: Tensor, num_pos: Tensor, momentum: float) -> Tensor:
    """The loss normaliser after one batch: ``m * running + (1 - m) * max(num_pos, 1)``, or the batch's count
    itself while ``running`` is 0 (not yet set). Tensor ops only, so a training step never waits on the device."""
    n = num_pos.clamp(min=1).to(running.dtype)
    return torch.where(running > 0, momentum * running + (1 - momentum) * n, n)


class Detector(nn.Module):
    def __init__(
        self,
        *,
        encoder: nn.Module,
        decoder: nn.Module,
        num_classes: int,
        level_ranges: Sequence[tuple[float, float]],
        loss: LossConfig = LossConfig(),
        center_radius: float = 1.5,
        multi_label: bool = False,
    ):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.num_classes = num_classes
        self.num_levels = len(level_ranges)
        self.level_ranges = [(float(lo), float(hi)) for lo, hi in level_ranges]
        self.loss_opts = loss
        self.center_radius = center_radius  # label assignment (assigner.assign)
        self.multi_label = multi_label
        # Running positive count (OpenTAD keeps it as a buffer, so checkpoints carry it); 0 until the first
        # training batch sets it when no initial value is given.
        self.loss_normalizer: Tensor
        self.register_buffer("loss_normalizer", torch.tensor(float(loss.normalizer_init or 0.0)))

    @property
    def divisor(self) -> int:
        return pyramid_divisor(self.num_levels)

    def forward(self, feats: Tensor, mask: Tensor) -> Outputs:
        """feats (B, C, T) with mask (B, T); T must be a multiple of :attr:`divisor`."""
        if feats.shape[-1] % self.divisor:
            raise ValueError(f"input length {feats.shape[-1]} is not a multiple of {self.divisor}")
        levels, masks = self.encode_decode(feats, mask)
        sizes = [m.shape[1] for m in masks]

        def cat(name: str) -> Tensor | None:
            parts = [getattr(o, name) for o in levels]
            return None if parts[0] is None else torch.cat(parts, 1)

        return Outputs(
            cls_logits=torch.cat([o.cls_logits for o in levels], 1),
            distances=torch.cat([o.distances for o in levels], 1),
            refine_logits=cat("refine_logits"),
            refine_offsets=cat("refine_offsets"),
            mask=torch.cat(masks, 1),
            points=make_points(sizes, self.level_ranges, feats.device),
            level_sizes=sizes,
            refinement=getattr(self.decoder, "refinement", Refinement()),
        )

    def encode_decode(self, feats: Tensor, mask: Tensor) -> tuple[list[LevelOutputs], list[Tensor]]:
        """The encoder's pyramid through the decoder: one :class:`LevelOutputs` and one mask (B, T_l) per level."""
        pyramid, masks = self.encoder(feats, mask)
        return self.decoder(pyramid, masks), masks

    # ----------------------------------------------------------------------------------------- training
    def targets(self, out: Outputs, segments: list[Tensor], labels: list[Tensor]) -> Targets:
        device = out.mask.device
        per_video = [
            assign(out.points, s.to(device), l.to(device), self.num_classes, self.center_radius, self.multi_label)
            for s, l in zip(segments, labels)
        ]
        return Targets(*(torch.stack(t) for t in zip(*per_video)))  # (B, P, K), (B, P, K, 2)

    def loss(self, feats: Tensor, mask: Tensor, segments: list[Tensor], labels: list[Tensor]) -> dict[str, Tensor]:
        """Eq. 13 on the refined outputs, mixed with the same loss on the coarse ones (released code).

        Without any refinement only the coarse terms are computed (the mix would equal them anyway).
        The network runs under the caller's autocast (bf16 / fp16 training), the losses in fp32 outside it.
        """
        out = self(feats, mask)
        with torch.autocast(out.mask.device.type, enabled=False):
            return self.loss_of(out.float(), segments, labels)

    def global_count(self, count: Tensor) -> Tensor:
        """A count of this batch summed over the processes of a distributed run, in training (every process
        then divides its share of the global batch by the global batch's count, and keeps the same normaliser);
        ``count`` itself in one process or in evaluation."""
        return global_sum(count) if self.training else count

    def loss_of(self, out: Outputs, segments: list[Tensor], labels: list[Tensor]) -> dict[str, Tensor]:
        """The losses of the network's outputs (fp32) for the ground truth (:meth:`loss`)."""
        tgt = self.targets(out, segments, labels)
        positive = tgt.positive & out.mask  # (B, P)
        num_pos = positive.sum()
        if self.training:
            self.loss_normalizer.copy_(
                update_normalizer(self.loss_normalizer, self.global_count(num_pos), self.loss_opts.normalizer_momentum)
            )
        # In evaluation before any training step the normaliser is still unset: this batch's count stands in.
        normalizer = torch.where(self.loss_normalizer > 0, self.loss_normalizer, num_pos.clamp(min=1).float())
        focal = self.loss_opts.coarse_cls == "focal"
        coarse = self._loss_terms(
            F.logsigmoid(out.cls_logits), out.distances, tgt, out.mask, normalizer, out.cls_logits if focal else None
        )
        if out.refined:
            w = self.loss_opts.refined_weight
            refined = self._loss_terms(out.refined_log_prob, out.refined_distances, tgt, out.mask, normalizer)
            losses = {k: w * refined[k] + (1 - w) * coarse[k] for k in refined}
        else:
            losses = coarse
        losses["loss"] = losses["cls_loss"] + losses["reg_loss"]
        losses["num_pos"] = num_pos.detach().float()
        return losses

    def _loss_terms(
        self,
        log_p: Tensor,
        dist: Tensor,
        tgt: Targets,
        valid: Tensor,
        normalizer: Tensor,
        focal_logits: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """VFL over valid points and IoU loss over positive (point, class) pairs.

        log_p (B, P, K), dist (B, P, K, 2), valid (B, P). ``cls_target`` 'iou': each positive pair's VFL target
        is the tIoU of the segment predicted for that class with the action it regresses; 'binary': the target is
        1 and the pair's loss is weighted by tIoU^iou_weight_power (released code), so classification learns at
        full strength before the boundaries are good. ``focal_logits`` (B, P, K): the classification term is
        the focal loss of these logits against the binary labels instead (``loss.coarse_cls: focal``).
        """
        o = self.loss_opts
        pairs = (tgt.cls > 0) & valid[..., None]  # (B, P, K)
        reg = iou_loss(dist[pairs], tgt.reg[pairs], o.reg_loss)  # (M,) over the M positive pairs
        if focal_logits is not None:
            focal = sigmoid_focal_loss(focal_logits, tgt.cls, o.focal_alpha, o.focal_gamma).sum(-1) * valid
            if o.normalizer == "paper":
                normalizer = self.global_count(pairs.any(-1).sum()).clamp(min=1)
            return {"cls_loss": focal.sum() / normalizer, "reg_loss": reg.sum() / normalizer}
        iou = distance_iou(dist[pairs], tgt.reg[pairs]).detach()  # (M,)
        q = torch.zeros_like(log_p)
        q[pairs] = iou if o.cls_target == "iou" else torch.ones_like(iou)
        vfl = varifocal_loss(log_p, q, o.vfl_alpha, o.vfl_gamma)  # (B, P, K)
        if o.cls_target == "binary":
            weight = torch.ones_like(vfl)
            weight[pairs] = iou.clamp(min=0) ** o.iou_weight_power
            vfl = vfl * weight
        vfl = vfl.sum(-1) * valid  # (B, P)
        if o.normalizer == "paper":
            # Eq. 13 literally: positive steps' VFL weighted by their tIoU (the mean over their classes when
            # several are positive), over N_pos; negative steps over N_neg; the IoU loss over N_pos.
            positive = pairs.any(-1)  # (B, P)
            n_pos = self.global_count(positive.sum()).clamp(min=1)
            n_neg = self.global_count((valid & ~positive).sum()).clamp(min=1)
            q_iou = torch.zeros_like(log_p)
            q_iou[pairs] = iou
            sigma = q_iou.sum(-1)[positive] / pairs.sum(-1)[positive]  # (N_pos,)
            cls = (sigma * vfl[positive]).sum() / n_pos + vfl[valid & ~positive].sum() / n_neg
            return {"cls_loss": cls, "reg_loss": reg.sum() / n_pos}
        return {"cls_loss": vfl.sum() / normalizer, "reg_loss": reg.sum() / normalizer}

    # ---------------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def predict(self, feats: Tensor, mask: Tensor) -> list[VideoPrediction]:
        """Per video: refined scores and class-wise segments (grid steps) of each level's valid steps."""
        out: Outputs = self(feats, mask)
        scores, segments, valid = out.dense_prediction()
        return split_videos(scores, segments, valid, out.level_sizes)

    def predict_dense(self, feats: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The pre-NMS prediction before it is split per video: refined scores (B, P, K), class-wise segments
        (B, P, K, 2) in grid steps and the valid points (B, P). What ``cltdr export-model`` exports."""
        out: Outputs = self(feats, mask)
        return out.dense_prediction()
