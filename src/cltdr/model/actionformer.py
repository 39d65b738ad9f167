"""ActionFormer's decoder: a classification head and a class-agnostic distance regression head on P^l itself.

Shapes: B batch, D channels, K classes, T steps of level l. Parameters are shared across levels, except one
learnable scale per level: distances are ReLU(s_l * x), in units of the level's stride.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cltdr.model.layers import ConvTower, run_towers
from cltdr.model.outputs import LevelOutputs


def relu_passing_gradient(x: Tensor) -> Tensor:
    """ReLU(x) in the forward pass, the identity's gradient in the backward pass.

    With a plain ReLU a distance channel whose output turns negative at every point gets no gradient again and
    stays at 0: on the synthetic demo one seed in five (2024-2028) of this decoder lost its start distances that
    way in the first epoch (regression loss stuck at 0.6 against 0.1). The loss's gradient at a clipped distance
    (0, below a positive target) pushes x back up. The forward value is ReLU's exactly, so predictions are
    unchanged.
    """
    return x + (F.relu(x) - x).detach()


class ActionFormerDecoder(nn.Module):
    """Shared-feature heads (no cross-level decoupling, no refinement).

    The distances are the same for every class; they are returned as an expand (no copy) of (B, T, 1, 2) to
    the detector's class-wise (B, T, K, 2).
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        num_levels: int,
        *,
        head_dim: int = 512,
        head_layers: int = 3,
        kernel_size: int = 3,
        prior_prob: float = 0.01,
    ):
        super().__init__()
        self.num_classes = num_classes
        tower: dict[str, Any] = dict(num_layers=head_layers, kernel_size=kernel_size)
        self.cls_head = ConvTower(dim, head_dim, num_classes, prior_prob=prior_prob, **tower)
        self.reg_head = ConvTower(dim, head_dim, 2, **tower)
        self.scales = nn.Parameter(torch.ones(num_levels))  # (L,)

    def forward(self, feats: list[Tensor], masks: list[Tensor]) -> list[LevelOutputs]:
        out = run_towers({"cls": (self.cls_head, feats), "reg": (self.reg_head, feats)}, masks)
        outputs = []
        for l, (cls, reg) in enumerate(zip(out["cls"], out["reg"])):
            dist = relu_passing_gradient(self.scales[l] * reg).transpose(1, 2)  # (B, T, 2)
            outputs.append(
                LevelOutputs(
                    cls_logits=cls.transpose(1, 2), distances=dist.unsqueeze(2).expand(-1, -1, self.num_classes, -1)
                )
            )
        return outputs
