"""The released detector: each video computed on its canvas, and the released loss (``cltdr.model.released``).

Shapes: B batch, C input channels, T input steps, P points over all levels, K classes, M positive pairs.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cltdr.config import LossConfig
from cltdr.model.detector import Detector, update_normalizer
from cltdr.model.losses import distance_iou, iou_loss, sigmoid_focal_loss, varifocal_loss
from cltdr.model.outputs import LevelOutputs, Outputs
from cltdr.model.released.decoder import ReleasedDecoder
from cltdr.model.released.encoder import ReleasedEncoder
from cltdr.ops.dft import exporting

__all__ = ["ReleasedDetector", "canvas_lengths"]


def canvas_lengths(lengths: Tensor, min_length: int, multiple: int) -> Tensor:
    """The canvas of each video, (B,) -> (B,): ``min_length`` for a video no longer than it, else its length
    rounded up to ``multiple`` (the released code's padding, in training and testing)."""
    rounded = (lengths + multiple - 1) // multiple * multiple
    return torch.where(lengths <= min_length, torch.full_like(lengths, min_length), rounded)


class ReleasedDetector(Detector):
    """The detector of ``model.variant: released``: each video on its canvas (module docstring), and the
    released loss. ``min_canvas`` / ``canvas_multiple``: a video of T valid steps is computed on ``min_canvas``
    steps when T <= min_canvas, else on T rounded up to ``canvas_multiple`` (:func:`canvas_lengths`)."""

    def __init__(
        self,
        *,
        encoder: ReleasedEncoder,
        decoder: ReleasedDecoder,
        num_classes: int,
        level_ranges: Sequence[tuple[float, float]],
        loss: LossConfig = LossConfig(),
        center_radius: float = 1.5,
        multi_label: bool = False,
        min_canvas: int = 0,
        canvas_multiple: int = 1,
        label_smoothing: float = 0.0,
    ):
        super().__init__(
            encoder=encoder,
            decoder=decoder,
            num_classes=num_classes,
            level_ranges=level_ranges,
            loss=loss,
            center_radius=center_radius,
            multi_label=multi_label,
        )
        if min_canvas % self.divisor or canvas_multiple % self.divisor:
            raise ValueError(
                f"canvas lengths {min_canvas} and {canvas_multiple} must be multiples of {self.divisor}, "
                "the coarsest stride"
            )
        self.min_canvas, self.canvas_multiple = min_canvas, canvas_multiple
        self.label_smoothing = label_smoothing

    def encode_decode(self, feats: Tensor, mask: Tensor) -> tuple[list[LevelOutputs], list[Tensor]]:
        canvas = canvas_lengths(mask.sum(1), self.min_canvas, self.canvas_multiple)  # (B,)
        if exporting():
            # one graph for every T and mask: every canvas must fit the input (deploy.input_multiple exports
            # padding 'divisor' only, whose canvas is the length rounded up), and the canvas lengths stay a tensor
            extent = torch.arange(feats.shape[-1], device=mask.device)[None] < canvas[:, None]  # (B, T)
            lengths: Tensor | None = canvas
        else:
            T = max(int(canvas.max()), feats.shape[-1])
            if T > feats.shape[-1]:  # padded further, with zeros, as the released code pads
                feats, mask = F.pad(feats, (0, T - feats.shape[-1])), F.pad(mask, (0, T - mask.shape[-1]))
            extent = torch.arange(T, device=mask.device)[None] < canvas[:, None]  # (B, T)
            lengths = None if bool(extent.all()) else canvas
        pyramid, masks, extents = self.encoder(feats, mask, extent, lengths)
        return self.decoder(pyramid, masks, extents), masks

    def loss_of(self, out: Outputs, segments: list[Tensor], labels: list[Tensor]) -> dict[str, Tensor]:
        """The released loss: w x (refined terms) + (1 - w) x (coarse terms), w = ``loss.refined_weight``.

        Refined: varifocal loss (alpha, gamma: ``loss.vfl_*``) on sigmoid(z_a * z_co) against the binary target
        (label-smoothed), positive pairs weighted by tIoU^``iou_weight_power``, a weight that is not detached,
        so the boundaries train through it too (``loss.cls_target: iou``: the detached tIoU as target
        instead), + the IoU loss of the refined boundaries. Coarse: focal loss (``loss.focal_*``) on the coarse
        score + the IoU loss of the coarse boundaries. The running positive count is updated once before each
        of the two, as the released code does.
        """
        tgt = self.targets(out, segments, labels)
        o, valid = self.loss_opts, out.mask
        pairs = (tgt.cls > 0) & valid[..., None]  # (B, P, K)
        num_pos = (tgt.positive & valid).sum()
        norms, n, count = [], self.loss_normalizer, self.global_count(num_pos)
        for _ in range(2):
            n = update_normalizer(n, count, o.normalizer_momentum)
            norms.append(n)
        if self.training:
            self.loss_normalizer.copy_(n)
        smooth = self.label_smoothing
        target = tgt.cls * (1 - smooth) + smooth / (self.num_classes + 1)  # (B, P, K)

        def reg_loss(dist: Tensor) -> tuple[Tensor, Tensor]:
            """The IoU loss of positive pairs and their tIoU, (M,) each."""
            d, t = dist[pairs], tgt.reg[pairs]
            return iou_loss(d, t, o.reg_loss), distance_iou(d, t)

        reg_r, iou = reg_loss(out.refined_distances)
        q = target.clone()
        if o.cls_target == "iou":
            q[pairs] = iou.detach()
        vfl = varifocal_loss(out.refined_log_prob, q, o.vfl_alpha, o.vfl_gamma)  # (B, P, K)
        if o.cls_target == "binary":
            # not detached, as in the released code: the weight also trains the refined boundaries
            weight = torch.ones_like(vfl)
            weight[pairs] = iou.clamp(min=0) ** o.iou_weight_power
            vfl = vfl * weight
        reg_c = reg_loss(out.distances)[0]
        focal = sigmoid_focal_loss(out.cls_logits, target, o.focal_alpha, o.focal_gamma)
        refined = {"cls_loss": (vfl * valid[..., None]).sum() / norms[0], "reg_loss": reg_r.sum() / norms[0]}
        coarse = {"cls_loss": (focal * valid[..., None]).sum() / norms[1], "reg_loss": reg_c.sum() / norms[1]}
        w = o.refined_weight
        losses = {k: w * refined[k] + (1 - w) * coarse[k] for k in refined}
        losses["loss"] = losses["cls_loss"] + losses["reg_loss"]
        losses["num_pos"] = num_pos.detach().float()
        return losses
