"""CLTDR-GMG as the authors' released code builds it (github LiQiang0307/CLTDR-GMG, ``libs/modeling``):
``model.variant: released``, so that their checkpoints run here (``cltdr import-checkpoint``, checkpoint.py).

    encoder.py      projection, GMG blocks (spectral filter, ungated products), max-pool pyramid, level norms
    decoder.py      DCM / DRM / CLFF, the towers, the RefineHead, Trident decoding
    detector.py     the canvas each video is computed on, and the released loss
    checkpoint.py   their .pth.tar -> a state dict of this variant (every tensor mapped by name and shape)

Everything else is the project's: masked layers and towers, Trident decoding, label assignment, losses,
post-processing, evaluation, the CLI.

Shapes: B batch, C input channels, D channels, T steps of the current level, F = T // 2 + 1 frequency bins,
K classes, L levels, R = num_bins + 1.

What their code does where it differs from the paper (and from this project's ``variant: paper``):

- GMG block (their SGPBlock): the global filter is W = SoftShrink_0.001(A2 ReLU(A1 X + b1) + b2) on the real FFT
  X of the block's LayerNorm h, with A1, A2 per-channel complex scalars and the ReLU applied to the real and
  imaginary parts apart (:class:`SpectralFilter`); the gates are plain products, f = FC(h) * f_l + f_l + f_g + h
  with f_l = Conv(h) * f_g, FC a per-channel (depth-wise 1x1) conv and Conv depth-wise with kernel 1 in the
  full-resolution blocks and ``local_kernel`` after each max-pool; the residual is x + s1 * f and the FFN's
  x + s2 * FFN(GroupNorm(x)), s1, s2 learned per-channel scales (AffineDropPath) in the pooled blocks when
  drop-path is on. The projection convs have no bias; sinusoidal position embeddings are optional.
- A LayerNorm on every pyramid level before the decoder.
- DCM / DRM: the neighbour is resampled with a full transposed / strided conv, the conv on P_l is 1x1 and full.
  CLFF: full (not depth-wise) convs. Heads: the Trident start / end towers read detached features; the
  centre offsets are ReLU(s_l * logits) with a learned scale per level.
- RefineHead: one tower; R_co (kernel ``head_kernel``) and class-wise boundary offsets R_so, R_eo (kernel 7)
  in grid steps. The refined score is sigmoid(z_a * z_co), the refined boundaries (t - d_s * stride) + R_so and
  (t + d_e * stride) + R_eo, clamped to contain t (``Refinement('logit_product', 'grid', clamp=True)``).
- Loss (:meth:`ReleasedDetector.loss`): 0.7 x (varifocal on the refined score, positives weighted by
  tIoU^power with the gradient kept, + DIoU on the refined boundaries) + 0.3 x (focal loss on the coarse score
  + DIoU on the coarse boundaries), each over the running positive count, which the released code updates
  before each of the two.

**Canvas.** The released code computes every video padded to a fixed length, in training and in testing:
max_seq_len steps, or T rounded up to 2^(L-1) x local_kernel when T is longer; and many of its operations run
over that padding (its LayerNorms, GroupNorms, FFTs, max-pools, GAPs and the convs between levels read padded
steps, which hold non-zero values). Its trained weights expect exactly that, so this variant computes each video
on the same canvas: inside a video's canvas every operation is the released code's (``mask``, the valid steps,
is used where the released code masks; ``extent``, the canvas, everywhere else), and beyond it every tensor is
zero and read by nothing. A video's outputs therefore depend on its own features only, never on its batch.
"""

from cltdr.model.released.decoder import ReleasedDecoder
from cltdr.model.released.detector import ReleasedDetector, canvas_lengths
from cltdr.model.released.encoder import ReleasedEncoder, ReleasedGMGBlock, SpectralFilter

__all__ = [
    "ReleasedDecoder",
    "ReleasedDetector",
    "ReleasedEncoder",
    "ReleasedGMGBlock",
    "SpectralFilter",
    "canvas_lengths",
]
