"""TriDet's encoder: Scalable-Granularity Perception (SGP) blocks and the max-pool pyramid.

Shapes: B batch, D channels, T steps of the current level.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cltdr.model.layers import MaskedConv1d, masked_mean
from cltdr.model.pyramid import MixerBlock, PyramidEncoder


def sgp_kernels(window_size: int, k: float) -> tuple[int, int]:
    """TriDet's two window-level kernels: w and the larger one, round((w + 1) * k) made odd."""
    large = round((window_size + 1) * k)
    return window_size, large + 1 if large % 2 == 0 else large


class SGPMixer(nn.Module):
    """The SGP layer (TriDet) on the LayerNorm h of x: (B, D, T) -> (B, D, T).

        f = phi(h) * FC(h) + psi(h) * (Conv_w(h) + Conv_kw(h)) + h
        phi(h) = ReLU(FC_g(mean over time of h))    (instant-level branch, video-level average)
        psi(h) = Conv_w'(h)                           (window-level branch)

    FC, FC_g and the convs are depth-wise, as in TriDet; the mean runs over valid steps only.
    """

    def __init__(self, dim: int, *, window_size: int = 1, k: float = 5.0):
        super().__init__()
        w, kw = sgp_kernels(window_size, k)
        self.psi = MaskedConv1d(dim, dim, w, groups=dim)
        self.fc = nn.Conv1d(dim, dim, 1, groups=dim)
        self.conv_w = MaskedConv1d(dim, dim, w, groups=dim)
        self.conv_kw = MaskedConv1d(dim, dim, kw, groups=dim)
        self.global_fc = nn.Conv1d(dim, dim, 1, groups=dim)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        phi = F.relu(self.global_fc(masked_mean(h, mask).unsqueeze(-1)))  # (B, D, 1)
        window = self.conv_w(h, mask)[0] + self.conv_kw(h, mask)[0]
        return self.fc(h) * phi + window * self.psi(h, mask)[0] + h


class SGPEncoder(PyramidEncoder):
    """Projection, full-resolution SGP blocks, then (max-pool, SGP block) per extra level; LayerNorm per level.

    THUMOS14 setting (TriDet): w = 1, k = 5 (so the kernels are 1 and 11), FFN 768, GroupNorm.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        num_levels: int,
        *,
        num_full_res_blocks: int = 2,
        ffn_dim: int = 768,
        window_size: int = 1,
        k: float = 5.0,
        kernel_size: int = 3,
        drop_path: float = 0.1,
    ):
        def block(stride: int, level: int) -> MixerBlock:
            return MixerBlock(dim, SGPMixer(dim, window_size=window_size, k=k), ffn_dim=ffn_dim, drop_path=drop_path)

        super().__init__(
            in_dim, dim, num_levels, make_block=block, num_stem_blocks=num_full_res_blocks, kernel_size=kernel_size
        )
