"""The CLTDR decoder: DCM, DRM with a Trident head, and the RefineHead with CLFF (paper eqs. 5-12).

Shapes: B batch, D channels, K classes, T steps of level l, R = num_bins + 1.
One decoder serves every level with shared parameters; P^{l+1} (coarser, T/2 steps) helps classification,
P^{l-1} (finer, 2T steps) helps regression. Where a neighbour level does not exist (top / bottom), its
term is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ConvTower, MaskedConv1d, masked_mean
from .trident import trident_distances


def upsample(dim: int, depthwise: bool = False) -> nn.ConvTranspose1d:
    """Transposed conv (k=3, s=2): T/2 -> T steps."""
    return nn.ConvTranspose1d(dim, dim, 3, stride=2, padding=1, output_padding=1, groups=dim if depthwise else 1)


def downsample(dim: int, depthwise: bool = False) -> nn.Conv1d:
    """Strided conv (k=3, s=2): 2T -> T steps."""
    return nn.Conv1d(dim, dim, 3, stride=2, padding=1, groups=dim if depthwise else 1)


class CrossLevelAttention(nn.Module):
    """DCM (eqs. 5-6) and DRM (eqs. 7-8): select features of a neighbour level by channel attention.

        f_n = Resample(P^n),  f_l = Conv(P^l),  W = Sigmoid(FC(GAP(ReLU(f_n + f_l)))),  out = P^l + f_n * W

    ``resample`` brings the neighbour level to T steps (transposed conv from above, strided conv from below).
    GAP averages over valid steps only.
    """

    def __init__(self, dim: int, resample: nn.Module, kernel_size: int = 3):
        super().__init__()
        self.resample = resample
        self.conv = MaskedConv1d(dim, dim, kernel_size)
        self.fc = nn.Linear(dim, dim)

    def weights(self, f_n: Tensor, p: Tensor, mask: Tensor) -> Tensor:
        """Channel attention W of eq. 5 / 7: (B, D, T) x2 -> (B, D, 1)."""
        pooled = masked_mean(F.relu(f_n + self.conv(p, mask)[0]), mask)  # (B, D)
        return torch.sigmoid(self.fc(pooled)).unsqueeze(-1)

    def forward(self, p: Tensor, mask: Tensor, neighbour: Tensor | None) -> Tensor:
        if neighbour is None:
            return p
        m = mask.unsqueeze(1).to(p.dtype)
        f_n = self.resample(neighbour) * m  # (B, D, T)
        return p + f_n * self.weights(f_n, p, mask)


@dataclass
class LevelOutputs:
    """Raw decoder outputs of one level (logits; distances in units of the level's stride)."""

    cls_logits: Tensor  # (B, T, K) coarse classification (DCM)
    refine_logits: Tensor  # (B, T, K) refinement R_co of eq. 10
    distances: Tensor  # (B, T, K, 2) coarse start / end distances (DRM + Trident), >= 0
    refine_offsets: Tensor  # (B, T, 2) R_so, R_eo of eqs. 11-12


def refine_distances(distances: Tensor, offsets: Tensor) -> Tensor:
    """Eqs. 11-12 in distance form: s' = s + R_so and e' = e + R_eo, with s = t - d_s and e = t + d_e.

    distances (B, T, K, 2), offsets (B, T, 2) -> (B, T, K, 2).
    """
    return torch.stack([distances[..., 0] - offsets[:, :, None, 0], distances[..., 1] + offsets[:, :, None, 1]], -1)


def refined_log_prob(cls_logits: Tensor, refine_logits: Tensor) -> Tensor:
    """log of eq. 10, sqrt(a * R_co) with a, R_co the sigmoids of the logits, computed stably in log space."""
    return 0.5 * (F.logsigmoid(cls_logits) + F.logsigmoid(refine_logits))


class CLTDRDecoder(nn.Module):
    """Decoupled classification, decoupled regression with a Trident head, and refinement, for every level."""

    def __init__(self, dim: int, num_classes: int, *, head_dim: int = 512, head_layers: int = 3,
                 num_bins: int = 16, kernel_size: int = 3, prior_prob: float = 0.01):
        super().__init__()
        self.num_bins = num_bins
        self.dcm = CrossLevelAttention(dim, upsample(dim), kernel_size)
        self.drm = CrossLevelAttention(dim, downsample(dim), kernel_size)
        tower = dict(num_layers=head_layers, kernel_size=kernel_size)
        self.cls_head = ConvTower(dim, head_dim, num_classes, prior_prob=prior_prob, **tower)
        self.center_head = ConvTower(dim, head_dim, 2 * (num_bins + 1), **tower)
        self.start_head = ConvTower(dim, head_dim, num_classes, **tower)
        self.end_head = ConvTower(dim, head_dim, num_classes, **tower)
        # CLFF (eq. 9): depth-wise strided conv from below, transposed conv from above.
        self.clff_down = downsample(dim, depthwise=True)
        self.clff_up = upsample(dim)
        self.refine_cls = ConvTower(dim, head_dim, num_classes, prior_prob=prior_prob, **tower)
        self.refine_reg = ConvTower(dim, head_dim, 2, **tower)

    def clff(self, p: Tensor, mask: Tensor, finer: Tensor | None, coarser: Tensor | None) -> Tensor:
        """Eq. 9: f_c = Conv(P^{l-1}) + P^l + ConvTransposed(P^{l+1}), missing terms left out."""
        out = p
        if finer is not None:
            out = out + self.clff_down(finer)
        if coarser is not None:
            out = out + self.clff_up(coarser)
        return out * mask.unsqueeze(1).to(p.dtype)

    def fuse_level(self, p: Tensor, mask: Tensor, finer: Tensor | None, coarser: Tensor | None):
        """The three task features of one level: f_cls (DCM), f_reg (DRM) and f_c (CLFF), each (B, D, T)."""
        return self.dcm(p, mask, coarser), self.drm(p, mask, finer), self.clff(p, mask, finer, coarser)

    def forward(self, feats: list[Tensor], masks: list[Tensor]) -> list[LevelOutputs]:
        L = len(feats)
        fused = [self.fuse_level(feats[l], masks[l], feats[l - 1] if l > 0 else None, feats[l + 1] if l + 1 < L else None)
                 for l in range(L)]
        # The towers share their weights across levels: run each once over all levels laid end to end.
        mask, sizes = concat_levels(masks, masks)
        f_cls, f_reg, f_c = (concat_levels([f[i] for f in fused], masks)[0] for i in range(3))
        B = f_cls.shape[0]
        heads = {
            "cls": self.cls_head(f_cls, mask), "center": self.center_head(f_reg, mask),
            "start": self.start_head(f_reg, mask), "end": self.end_head(f_reg, mask),
            "refine_cls": self.refine_cls(f_c, mask), "refine_reg": self.refine_reg(f_c, mask),
        }
        per_level = {k: split_levels(v, sizes) for k, v in heads.items()}
        outputs = []
        for l, T in enumerate(sizes):
            center = per_level["center"][l].view(B, 2, self.num_bins + 1, T)
            outputs.append(LevelOutputs(
                cls_logits=per_level["cls"][l].transpose(1, 2),
                refine_logits=per_level["refine_cls"][l].transpose(1, 2),
                distances=trident_distances(center, per_level["start"][l], per_level["end"][l], self.num_bins),
                refine_offsets=per_level["refine_reg"][l].transpose(1, 2),
            ))
        return outputs


def concat_levels(feats: list[Tensor], masks: list[Tensor]) -> tuple[Tensor, list[int]]:
    """Levels (B, *, T_l) laid end to end along time, each followed by one masked-out step: (B, *, sum(T_l + 1)).

    With that gap, a tower of k=3 masked convs over the concatenation equals the tower run on each level:
    every conv re-zeroes masked steps, so no level ever reads its neighbour's features.
    """
    parts = []
    for f, m in zip(feats, masks):
        if f.dtype != torch.bool:
            f = f * m.unsqueeze(1).to(f.dtype)
        parts += [f, f.new_zeros(*f.shape[:-1], 1)]
    return torch.cat(parts, -1), [f.shape[-1] for f in feats]


def split_levels(x: Tensor, sizes: list[int]) -> list[Tensor]:
    """Inverse of :func:`concat_levels`: (B, C, sum(T_l + 1)) -> [(B, C, T_l)]."""
    chunks = x.split([n for T in sizes for n in (T, 1)], dim=-1)
    return list(chunks[0::2])
