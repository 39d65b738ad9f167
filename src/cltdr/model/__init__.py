"""Model: masked layers, the GMG encoder, the CLTDR decoder, label assignment, losses and the detector."""

from __future__ import annotations

from ..config import Config
from .cltdr import CLTDRDecoder
from .detector import Detector, LossOptions, Outputs
from .gmg import GMGEncoder

__all__ = ["Detector", "Outputs", "build_detector", "count_parameters"]


def build_detector(cfg: Config, num_classes: int) -> Detector:
    """The one place where the config is translated into constructor arguments."""
    m = cfg.model
    encoder = GMGEncoder(cfg.dataset.input_dim, m.embed_dim, m.num_levels, num_full_res_blocks=m.num_full_res_blocks,
                         ffn_dim=m.ffn_dim, kernel_size=m.kernel_size, drop_path=m.drop_path)
    decoder = CLTDRDecoder(m.embed_dim, num_classes, head_dim=m.head_dim, head_layers=m.head_layers,
                           num_bins=m.num_bins, kernel_size=m.kernel_size, prior_prob=m.cls_prior_prob)
    loss = LossOptions(**cfg.loss.model_dump(), center_radius=m.center_sample_radius, multi_label=m.multi_label)
    return Detector(encoder=encoder, decoder=decoder, num_classes=num_classes, level_ranges=m.level_ranges(), loss=loss)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
