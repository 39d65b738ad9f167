"""ActionFormer's encoder: pre-LN Transformer blocks with local-window masked self-attention.

Shapes: B batch, C_in input channels, D channels, T steps, L levels.
Each extra level's block downsamples itself as ActionFormer's does: its queries, keys and values are strided
depth-wise convs (k=3, s=2) with a LayerNorm, the attention runs at the coarser level, and the skip path is a
masked max-pool (k=3, s=2). THUMOS14 setting: 4 heads, window 19, MLP 4 x D.
"""

from __future__ import annotations

from cltdr.model.attention import MaskedMultiHeadAttention
from cltdr.model.pyramid import MixerBlock, PyramidEncoder


class TransformerEncoder(PyramidEncoder):
    """Projection, ``num_full_res_blocks`` local-attention blocks, then one strided block per extra level."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        num_levels: int,
        *,
        num_full_res_blocks: int = 2,
        num_heads: int = 4,
        window_size: int = 19,
        mlp_dim: int = 2048,
        kernel_size: int = 3,
        drop_path: float = 0.1,
    ):
        def block(stride: int, level: int) -> MixerBlock:
            attention = MaskedMultiHeadAttention(
                dim, num_heads, window=window_size, stride=stride, conv_qkv=True, kernel_size=kernel_size
            )
            return MixerBlock(dim, attention, ffn_dim=mlp_dim, drop_path=drop_path, ffn_norm="layer", stride=stride)

        super().__init__(
            in_dim,
            dim,
            num_levels,
            make_block=block,
            num_stem_blocks=num_full_res_blocks,
            kernel_size=kernel_size,
            strided_blocks=True,
        )
