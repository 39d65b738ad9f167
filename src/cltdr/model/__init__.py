"""Model: masked layers, encoders (GMG, Transformer, SGP, max-pool, conv), decoders (CLTDR, ActionFormer,
Trident), label assignment, losses and the detector; the authors' released architecture (released.py).

The build functions below are the one place where the config is translated into constructor arguments.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cltdr.config import Config
from cltdr.errors import ConfigError
from cltdr.model.actionformer import ActionFormerDecoder
from cltdr.model.cltdr import CLTDRDecoder
from cltdr.model.detector import Detector
from cltdr.model.gmg import GMGEncoder
from cltdr.model.outputs import Outputs
from cltdr.model.pyramid import ConvEncoder, MaxPoolEncoder
from cltdr.model.released import ReleasedDecoder, ReleasedDetector, ReleasedEncoder
from cltdr.model.sgp import SGPEncoder
from cltdr.model.transformer import TransformerEncoder

__all__ = [
    "Detector",
    "Outputs",
    "build_decoder",
    "build_detector",
    "build_encoder",
    "build_released",
    "count_parameters",
]


def build_encoder(cfg: Config) -> nn.Module:
    """``model.encoder``: (B, C, T) + mask -> L levels (B, D, T / 2^l) + masks."""
    m, in_dim = cfg.model, cfg.dataset.input_dim
    blocks: dict[str, Any] = dict(
        num_full_res_blocks=m.num_full_res_blocks, kernel_size=m.kernel_size, drop_path=m.drop_path
    )
    if m.encoder == "gmg":
        return GMGEncoder(in_dim, m.embed_dim, m.num_levels, ffn_dim=m.ffn_dim, options=m.gmg, **blocks)
    if m.encoder == "transformer":
        t = m.transformer
        return TransformerEncoder(
            in_dim,
            m.embed_dim,
            m.num_levels,
            num_heads=t.num_heads,
            window_size=t.window_size,
            mlp_dim=t.mlp_dim or 4 * m.embed_dim,
            **blocks,
        )
    if m.encoder == "sgp":
        return SGPEncoder(
            in_dim, m.embed_dim, m.num_levels, ffn_dim=m.ffn_dim, window_size=m.sgp.window_size, k=m.sgp.k, **blocks
        )
    if m.encoder == "conv":
        return ConvEncoder(in_dim, m.embed_dim, m.num_levels, ffn_dim=m.ffn_dim, **blocks)
    return MaxPoolEncoder(in_dim, m.embed_dim, m.num_levels, kernel_size=m.kernel_size)


def build_decoder(cfg: Config, num_classes: int) -> nn.Module:
    """``model.decoder``: L levels -> one ``LevelOutputs`` per level."""
    m = cfg.model
    heads: dict[str, Any] = dict(
        head_dim=m.head_dim, head_layers=m.head_layers, kernel_size=m.kernel_size, prior_prob=m.cls_prior_prob
    )
    if m.decoder == "actionformer":
        return ActionFormerDecoder(m.embed_dim, num_classes, m.num_levels, **heads)
    if m.decoder == "trident":
        return CLTDRDecoder(
            m.embed_dim, num_classes, num_bins=m.num_bins, cls_levels=(), reg_levels=(), refine="none", **heads
        )
    # One level has no neighbours: build no cross-level modules rather than modules that never run.
    c, multi = m.cltdr, m.num_levels > 1
    return CLTDRDecoder(
        m.embed_dim,
        num_classes,
        num_bins=m.num_bins,
        cls_levels=c.cls_levels if multi else (),
        reg_levels=c.reg_levels if multi else (),
        refine=c.refine,
        fusion=c.fusion,
        clff_levels=("below", "above") if multi else (),
        offset_init=c.offset_init,
        clamp_refined=c.clamp_refined,
        depthwise=c.depthwise,
        depthwise_up=c.depthwise_up,
        shared_refine=c.shared_refine,
        refine_depthwise=c.refine_depthwise,
        detach_boundary=c.detach_boundary,
        score=c.score,
        offsets=c.offsets,
        clff_depthwise=c.clff_depthwise,
        fusion_kernel=c.fusion_kernel,
        boundary_input=c.boundary_input,
        center_scale=c.center_scale,
        offset_kernel=c.offset_kernel,
        num_levels=m.num_levels,
        **heads,
    )


def build_released(cfg: Config, num_classes: int) -> ReleasedDetector:
    """``model.variant: released``: the authors' released architecture (``cltdr.model.released``)."""
    m, r, d = cfg.model, cfg.model.released, cfg.dataset
    if cfg.loss.normalizer != "positives":
        raise ConfigError(
            f"loss.normalizer={cfg.loss.normalizer!r}: model.variant 'released' trains with the released loss, "
            "normalised by the running positive count ('positives')"
        )
    divisor = cfg.divisor
    if r.padding == "released" and d.max_seq_len % divisor:
        raise ConfigError(
            f"dataset.max_seq_len={d.max_seq_len}: model.released.padding 'released' computes short videos on "
            f"max_seq_len steps, which must be a multiple of the coarsest stride {divisor}"
        )
    encoder = ReleasedEncoder(
        d.input_dim,
        m.embed_dim,
        m.num_levels,
        num_full_res_blocks=m.num_full_res_blocks,
        ffn_dim=m.ffn_dim,
        kernel_size=m.kernel_size,
        local_kernel=r.local_kernel,
        drop_path=m.drop_path,
        abs_position=r.abs_position,
        max_len=d.max_seq_len,
        init_std=r.init_conv_std,
    )
    decoder = ReleasedDecoder(
        m.embed_dim,
        num_classes,
        m.num_levels,
        head_dim=m.head_dim,
        head_layers=m.head_layers,
        num_bins=m.num_bins,
        head_kernel=r.head_kernel,
        boundary_kernel=r.boundary_kernel,
        prior_prob=m.cls_prior_prob,
    )
    return ReleasedDetector(
        encoder=encoder,
        decoder=decoder,
        num_classes=num_classes,
        level_ranges=m.level_ranges(),
        loss=cfg.loss,
        center_radius=m.center_sample_radius,
        multi_label=m.multi_label,
        min_canvas=d.max_seq_len if r.padding == "released" else 0,
        canvas_multiple=divisor * (r.local_kernel if r.local_kernel > 1 else 1),  # their max_div_factor
        label_smoothing=r.label_smoothing,
    )


def build_detector(cfg: Config, num_classes: int) -> Detector:
    m = cfg.model
    if m.variant == "released":
        return build_released(cfg, num_classes)
    return Detector(
        encoder=build_encoder(cfg),
        decoder=build_decoder(cfg, num_classes),
        num_classes=num_classes,
        level_ranges=m.level_ranges(),
        loss=cfg.loss,
        center_radius=m.center_sample_radius,
        multi_label=m.multi_label,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
