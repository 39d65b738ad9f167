"""The typed configuration: five sections of documented fields (reading YAML is in load.py).

Every field is documented here; this module is the one table of defaults (THUMOS14 / I3D, SPEC section 4).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_serializer,
    model_validator,
)

# A tIoU threshold, as the config and every command (`cltdr evaluate --tiou`) accept it.
TIoU = Annotated[float, Field(gt=0, le=1)]


def invalid_tious(values: list[float]) -> list[float]:
    """The values that are not valid tIoU thresholds (:data:`TIoU`: in (0, 1])."""
    check = TypeAdapter(TIoU)
    bad = []
    for v in values:
        try:
            check.validate_python(v)
        except ValidationError:
            bad.append(v)
    return bad


def _device(value: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise ValueError("expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _path_or_paths(value: Any) -> Any:
    """A path, or a non-empty list of paths (checked here so that errors name the key, not union members)."""
    if isinstance(value, (str, Path)):
        return Path(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, Path)) for v in value):
        return [Path(v) for v in value]
    raise ValueError("expected a path or a non-empty list of paths")


class FusionConfig(_Section):
    """Optional post-processing with external video-level class scores (ActionFormer/TriDet on ActivityNet):
    each video's ``max_segments`` best segments are repeated for its ``topk`` classes, scored detection score x
    class score. `cltdr test` then writes the metrics with and without it."""

    score_file: Path = Field(
        description="JSON of video-level class scores: {'results': {video_id: [K scores]}, 'class': [K names]} "
        "(the CUHK file of ActionFormer/TriDet) or {'results': {video_id: {name: score}}}."
    )
    topk: int = Field(2, ge=1, description="Classes per video whose scores multiply the detections.")
    max_segments: int = Field(200, ge=1, description="Highest-scoring segments per video that are fused.")


class DatasetConfig(_Section):
    """Where the data lives and how its feature grid samples the video (SPEC section 2)."""

    annotation_file: Path = Field(description="Annotation JSON in the ActionFormer/ActivityNet layout.")
    feat_dir: Annotated[Union[Path, list[Path]], BeforeValidator(_path_or_paths)] = Field(
        description="Folder with one feature file per video (<feat_dir>/<prefix><id><ext>), or one HDF5 file "
        "(.h5/.hdf5) with an entry <prefix><id> per video. A list concatenates several sources along the channels "
        "in order (two-stream: [rgb_folder, flow_folder]). '{subset}' is replaced by the video's subset "
        "(per-split folders)."
    )
    feat_prefix: str = Field("", description="File name (or HDF5 key) prefix before the video id.")
    feat_ext: str = Field(
        ".npy",
        description="File name ending after the video id; its suffix picks the reader: .npy, .npz, .pt, "
        ".pth, .pkl, .pickle.",
    )
    feat_keys: Optional[Annotated[list[str], Field(min_length=1)]] = Field(
        None,
        description="Arrays to use from files that hold a mapping (npz, dict, HDF5 group), concatenated "
        "along the channels (HACS SlowFast: [slow_feature, fast_feature]); unset: the file's only array.",
    )
    feat_layout: Literal["TC", "CT"] = Field(
        "TC", description="Stored axis order: (T, C) or (C, T); leading axes of size 1 are dropped."
    )
    train_subset: str = Field("validation", description="Subset trained on (THUMOS14 trains on 'validation').")
    test_subset: str = Field("test", description="Subset evaluated by `cltdr test`; never used for selection.")
    val_subset: Optional[str] = Field(
        None, description="Optional subset for model selection; when unset the last epoch is kept."
    )
    class_names: Optional[list[str]] = Field(
        None,
        description="Class list in label order; read from the annotation file's label_id when unset. "
        "With class_agnostic: the one name given to every action (default ['action']).",
    )
    class_agnostic: bool = Field(
        False, description="Train one 'action' class (ActivityNet/HACS recipe); combine with `fusion` for labels."
    )
    input_dim: int = Field(2048, gt=0, description="Feature channels C (all sources together).")
    feat_stride: float = Field(4, gt=0, description="Frames between consecutive stored features.")
    num_frames: float = Field(16, gt=0, description="Frames seen by one feature (backbone clip length).")
    default_fps: Optional[float] = Field(
        None, gt=0, description="Frame rate used for videos whose annotation has no fps."
    )
    feat_fps: Optional[float] = Field(
        None,
        gt=0,
        description="Frame rate of the frames the features were extracted from, used for every video "
        "instead of the annotation's fps (ActionFormer's default_fps: EPIC 30, ActivityNet TSP 15, HACS 15).",
    )
    downsample_rate: int = Field(1, ge=1, description="Keep every k-th stored feature; the stride grows k-fold.")
    resize_to: Optional[int] = Field(
        None,
        ge=1,
        description="Resize every video's features linearly to this many steps (ActivityNet: 192 "
        "TSP, 160 I3D); each video then has its own grid. None: keep each video's length.",
    )
    max_seq_len: int = Field(2304, gt=0, description="Longest training crop, in feature steps.")
    crop_ratio: Optional[tuple[float, float]] = Field(
        (0.9, 1.0), description="Shorter videos are cropped to a random share in this range (None: never)."
    )
    trunc_thresh: float = Field(0.5, ge=0, le=1, description="Share of an action a crop must keep to keep it.")
    noise_std: float = Field(0.0, ge=0, description="Std of the Gaussian noise added to training features.")
    segment_policy: Literal["error", "clip", "drop"] = Field(
        "error", description="What to do with annotated segments that lie outside their video."
    )
    fusion: Optional[FusionConfig] = Field(
        None, description="External video-level class scores fused into the detections at test time."
    )

    @model_validator(mode="after")
    def _check_combinations(self):
        if self.resize_to is not None and self.resize_to > self.max_seq_len:
            raise ValueError(
                f"dataset.resize_to={self.resize_to} is longer than dataset.max_seq_len={self.max_seq_len}: "
                "training would crop the resized videos; set max_seq_len to resize_to"
            )
        if self.class_agnostic and self.class_names is not None and len(self.class_names) != 1:
            raise ValueError(
                f"dataset.class_names has {len(self.class_names)} names but dataset.class_agnostic is true: "
                "give the one name of the merged class, or leave class_names unset"
            )
        return self

    @property
    def feat_sources(self) -> list[Path]:
        """``feat_dir`` as a list of sources."""
        return list(self.feat_dir) if isinstance(self.feat_dir, list) else [self.feat_dir]


Side = Literal["above", "below"]


def _odd(value: int) -> int:
    if value % 2 == 0:
        raise ValueError(f"must be odd, got {value}")
    return value


OddInt = Annotated[int, Field(ge=1), AfterValidator(_odd)]


class GMGOptions(_Section):
    """Switches of the GMG block (Tables 6-8); read only when ``model.encoder`` is 'gmg'.

    Eq. 4 is f = x + ReLU(f_local) * FC(x) + ReLU(f_global) * Conv(x) + f_global. A branch that is off loses its
    term; a gate whose gating branch is off becomes the identity (no global branch: the local term is Conv(x));
    ``gate: false`` drops both gates (f = x + FC(x) + Conv(x) + f_global). See ``cltdr.model.gmg.GMGMixer``.
    """

    instant: bool = Field(True, description="Instant branch FC(x) (1x1 conv).")
    local: bool = Field(True, description="Local branch Conv(x) (depth-wise conv, model.kernel_size).")
    global_: Literal["fft", "attention", "none"] = Field(
        "fft",
        alias="global",
        description="Global branch: the FFT filter of eqs. 1-3, vanilla masked multi-head "
        "self-attention over the whole video (Table 8), or none.",
    )
    gate: bool = Field(True, description="The ReLU gates of eq. 4 (Table 7).")
    num_heads: int = Field(4, ge=1, description="Heads of the self-attention global branch (global: attention).")
    filter_init_std: Optional[float] = Field(
        0.02,
        gt=0,
        description="filter 'conv': std of the initial weights and biases of the FFT filter's two convs (None: "
        "PyTorch's default conv init). The filter W is computed from the spectrum, so the global term grows with "
        "the square of the input: with the default init each block multiplies the activations' scale by up to 10x "
        "at the start and training is slow and seed-dependent; started small, as GFNet and the released code start "
        "their filters, the global branch begins near zero and the blocks near the identity.",
    )

    filter: Literal["conv", "spectral"] = Field(
        "spectral",
        description="FFT filter W of eq. 2: 'spectral', the released code's SoftShrink(A2 ReLU(A1 X_f + b1) + b2) "
        "with A1, A2 one complex scalar per channel, started at N(0, 0.02); 'conv', the paper's "
        "Conv(ReLU(Conv(X_f))) along frequency. The released form is the default: ahead on real features, level "
        "on the synthetic benchmark, no slower (README, 'Which variant is the default').",
    )

    # The released code's forms (``cltdr.model.released`` lists them), each one switch away from the paper's:
    gate_form: Literal["relu", "product"] = Field(
        "relu",
        description="'relu': eq. 4's ReLU gates; 'product' (released code): plain products, and the branches' "
        "input h (the block's LayerNorm of x) joins the terms: f = x + FC(h) * f_l + f_l + f_global + h with "
        "f_l = Conv(h) * f_global.",
    )
    gate_init: Literal["default", "zero"] = Field(
        "default",
        description="Initial weights and biases of FC and Conv: PyTorch's default, or 0 (released code: the "
        "instant and local terms start at 0 and the block starts as its global term).",
    )
    instant_depthwise: bool = Field(
        False, description="FC is a per-channel (depth-wise) 1x1 conv, as in the released code, not a full one."
    )
    local_kernel: Optional[OddInt] = Field(
        None, description="Kernel of the local branch's Conv (None: model.kernel_size; the released code: 1)."
    )
    stem_drop_path: bool = Field(
        True,
        description="Stochastic depth (model.drop_path) also in the full-resolution blocks; false: only in the "
        "blocks after each max-pool (released code).",
    )
    layer_scale: Optional[float] = Field(
        None,
        gt=0,
        description="Learned per-channel scales of both residual branches of the blocks after each max-pool, "
        "started at this value (the released code's AffineDropPath: 1e-4), so each such block starts as the "
        "identity; None: no scales.",
    )

    @model_validator(mode="after")
    def _check_branches(self):
        if not (self.instant or self.local or self.global_ != "none"):
            raise ValueError("model.gmg: at least one of instant, local and global must be on")
        return self

    @model_serializer(mode="wrap")
    def _dump_global_by_its_key(self, handler):
        # 'global' is a Python keyword: the field is global_, its YAML key 'global' (pydantic < 2.11 has no
        # serialize_by_alias).
        return {("global" if k == "global_" else k): v for k, v in handler(self).items()}


class TransformerOptions(_Section):
    """ActionFormer's local-window Transformer encoder; read only when ``model.encoder`` is 'transformer'."""

    num_heads: int = Field(4, ge=1, description="Attention heads (must divide model.embed_dim).")
    window_size: OddInt = Field(19, description="Local attention window, odd (19 for THUMOS14).")
    mlp_dim: Optional[int] = Field(None, gt=0, description="Hidden width of each block's MLP (None: 4 x embed_dim).")


class SGPOptions(_Section):
    """TriDet's SGP encoder (block FFN: model.ffn_dim); read only when ``model.encoder`` is 'sgp'."""

    window_size: OddInt = Field(1, description="Window-level kernel w, odd (TriDet THUMOS14: 1).")
    k: float = Field(5.0, gt=0, description="The larger window kernel is round((w + 1) * k), made odd (THUMOS14: 5).")


class CLTDROptions(_Section):
    """Ablation switches of the CLTDR decoder (Tables 9-11); read only when ``model.decoder`` is 'cltdr'.

    Levels are named from P_l: 'above' is P_{l+1} (coarser), 'below' is P_{l-1} (finer); [] is P_l alone.
    """

    cls_levels: list[Side] = Field(["above"], description="Neighbour levels fused into P_l for classification.")
    reg_levels: list[Side] = Field(["below"], description="Neighbour levels fused into P_l for regression.")
    refine: Literal["both", "cls", "reg", "none"] = Field(
        "both", description="Outputs the RefineHead refines (Table 10); 'none': no CLFF and no RefineHead."
    )
    fusion: Literal["attention", "add", "concat"] = Field(
        "attention",
        description="How a neighbour level is fused (Table 11): channel attention (eqs. 5-8), "
        "addition, or concatenation with Conv(P_l) and a 1x1 conv.",
    )
    offset_init: Literal["zero", "default"] = Field(
        "zero",
        description="Initial boundary refinement R_so, R_eo (in level strides): 'zero' starts from the "
        "coarse boundaries; 'default' is PyTorch's conv init, which at stride 32 moves boundaries by ~8 steps "
        "at random before any training (the paper does not say).",
    )
    depthwise: bool = Field(
        True,
        description="DCM / DRM refine P_l, and DRM downsamples P_(l-1), with depth-wise convs (the paper: "
        "'1D depth-wise convolution ... utilized in DCM, DRM and RefineHead'); false: full convs (released code).",
    )
    depthwise_up: bool = Field(
        True,
        description="The transposed convs that upsample P_(l+1) (DCM, CLFF) are depth-wise (the paper only "
        "says 'transposed convolution'); false: full.",
    )
    shared_refine: bool = Field(
        True,
        description="One RefineHead tower predicts R_co and the boundary offsets (released code); false: a tower each.",
    )
    refine_depthwise: bool = Field(
        True,
        description="The RefineHead's convs before its predicting one are depth-wise (the paper: '1D depth-wise "
        "convolution ... utilized in DCM, DRM and RefineHead'; level with full convs on GTEA and the synthetic "
        "benchmark, 14-16% fewer FLOPs); false: full (released code; the default up to 0.3.0).",
    )
    detach_boundary: bool = Field(
        False,
        description="The Trident start / end branches read detached features, so their gradients do not "
        "reach the encoder (TriDet's detach_feat, kept by the released code).",
    )
    clamp_refined: bool = Field(
        True,
        description="Keep refined start / end distances >= 0, so a refined segment contains its point "
        "(released code; the paper does not say).",
    )
    # The released code's forms (``cltdr.model.released`` lists them), each one switch away from the paper's:
    score: Literal["geometric_mean", "logit_product"] = Field(
        "geometric_mean",
        description="Refined score: eq. 10's sqrt(a * R_co) of the two probabilities, or the released code's "
        "sigmoid(z_a * z_co) of the product of the two logits.",
    )
    offsets: Literal["strides", "grid"] = Field(
        "strides",
        description="Boundary refinement R_so, R_eo of eqs. 11-12: one pair per step in units of the level's "
        "stride, or (released code) one pair per class in grid steps.",
    )
    offset_kernel: Optional[OddInt] = Field(
        None,
        description="Kernel of the conv that predicts R_so, R_eo from the RefineHead's features (None: the "
        "towers' kernel, in the RefineHead's last conv; the released code: 7, a conv of its own beside R_co's).",
    )
    clff_depthwise: bool = Field(
        True,
        description="CLFF's strided conv from the finer level is depth-wise (eq. 9 reads as DRM's); false: a "
        "full conv (released code).",
    )
    fusion_kernel: Optional[OddInt] = Field(
        None,
        description="Kernel of the conv that refines P_l in DCM / DRM (None: model.kernel_size; the released "
        "code: 1, with depthwise false).",
    )
    boundary_input: Literal["regression", "level"] = Field(
        "regression",
        description="What the Trident start / end towers read: DRM's fused features (the paper's Fig. 2) or "
        "the level's own features (released code).",
    )
    center_scale: bool = Field(
        False,
        description="The Trident centre-offset logits pass through ReLU(s_l * z) with a learned scale s_l "
        "per level (released code).",
    )

    @model_validator(mode="after")
    def _check_levels(self):
        for key in ("cls_levels", "reg_levels"):
            levels = getattr(self, key)
            if len(set(levels)) != len(levels):
                raise ValueError(f"model.cltdr.{key} lists a level twice: {levels}")
        if self.offset_kernel is not None and self.refine not in ("both", "reg"):
            raise ValueError(
                f"model.cltdr.offset_kernel is set but model.cltdr.refine is {self.refine!r}: there are no "
                "boundary offsets to predict (refine 'both' or 'reg')"
            )
        return self


class ReleasedOptions(_Section):
    """The authors' released architecture (github LiQiang0307/CLTDR-GMG, ``libs/modeling``), read only when
    ``model.variant`` is 'released'; ``cltdr import-checkpoint`` loads their checkpoints into it.

    Their keys: ``local_kernel`` is n_sgp_win_size, ``head_kernel`` head_kernel_size, ``boundary_kernel``
    boudary_kernel_size, ``abs_position`` use_abs_pe, ``init_conv_std`` init_conv_vars, ``label_smoothing``
    train_cfg.label_smoothing; model.ffn_dim is their sgp_mlp_dim, model.kernel_size their embd_kernel_size.
    What the variant is, and where it differs from the paper: ``cltdr.model.released``.
    """

    local_kernel: OddInt = Field(
        1,
        description="Kernel of the depth-wise 'local' conv in the blocks after each max-pool (the full-resolution "
        "blocks always use 1); it also sets the padding multiple 2^(L-1) x local_kernel (their max_div_factor).",
    )
    head_kernel: OddInt = Field(3, description="Kernel of the classification, centre-offset and refinement towers.")
    boundary_kernel: OddInt = Field(3, description="Kernel of the Trident start / end towers.")
    abs_position: bool = Field(False, description="Add sinusoidal position embeddings after the projection.")
    init_conv_std: float = Field(
        0.0, ge=0, description="Std of the initial instant / local conv weights (0: they start at zero)."
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of both classification losses.")
    padding: Literal["released", "divisor"] = Field(
        "released",
        description="Canvas each video is computed on, alone: 'released' dataset.max_seq_len steps, or T rounded "
        "up to the padding multiple when longer, as the released code trains and tests (what its checkpoints "
        "expect); 'divisor': T rounded up to the multiple (cheaper on short videos, not what they were trained on).",
    )


# The model's option sections and the choice that reads each: model.<section> is read only when model.<part> is
# <name>, and only by the paper variant (the released variant reads model.released alone, which the paper one
# does not). A section that is not read must stay at its defaults (ModelConfig's validators).
SECTION_OWNERS: dict[str, tuple[str, str]] = {
    "gmg": ("encoder", "gmg"),
    "transformer": ("encoder", "transformer"),
    "sgp": ("encoder", "sgp"),
    "cltdr": ("decoder", "cltdr"),
}


class ModelConfig(_Section):
    """Detector architecture: CLTDR-GMG by default (paper + SPEC section 4), or any encoder with any decoder.

    Encoders: gmg (the paper), transformer (ActionFormer), sgp (TriDet), maxpool (TemporalMaxer: no blocks, so
    num_full_res_blocks, ffn_dim and drop_path are unused), conv (plain conv blocks). Decoders: cltdr (the paper),
    actionformer (shared-feature heads, class-agnostic distances), trident (TriDet: CLTDR without cross-level
    decoupling and refinement). Each encoder's / decoder's own options live in the section of its name; setting
    the section of one that is not selected is an error.
    """

    variant: Literal["paper", "released"] = Field(
        "paper",
        description="'paper': the model of the paper with the encoder / decoder chosen below; 'released': "
        "CLTDR-GMG exactly as the authors' released code builds it (model.released), so that their "
        "checkpoints run here (`cltdr import-checkpoint`).",
    )
    encoder: Literal["gmg", "transformer", "sgp", "maxpool", "conv"] = Field(
        "gmg", description="Encoder that builds the pyramid."
    )
    decoder: Literal["cltdr", "actionformer", "trident"] = Field(
        "cltdr", description="Decoder applied to every pyramid level."
    )
    gmg: GMGOptions = Field(GMGOptions(), description="GMG switches (encoder: gmg).")
    transformer: TransformerOptions = Field(TransformerOptions(), description="encoder: transformer options.")
    sgp: SGPOptions = Field(SGPOptions(), description="encoder: sgp options.")
    cltdr: CLTDROptions = Field(CLTDROptions(), description="CLTDR switches (decoder: cltdr).")
    released: ReleasedOptions = Field(ReleasedOptions(), description="The released architecture (variant: released).")
    embed_dim: int = Field(512, gt=0, description="Channels D of the projection and the pyramid.")
    num_levels: int = Field(6, ge=1, le=10, description="Pyramid levels L (strides 1, 2, ..., 2^(L-1)).")
    num_full_res_blocks: int = Field(2, ge=0, description="GMG blocks at full resolution before pooling.")
    ffn_dim: int = Field(
        496,
        gt=0,
        description="Hidden width of the FFN in each GMG block (the paper is silent: 496, about D, gives "
        "the paper's 17.6 M / 9.5 M parameters within 0.5 M; the released code uses 768).",
    )
    kernel_size: int = Field(3, ge=1, description="Kernel of the depth-wise convs (local branch, filter).")
    drop_path: float = Field(0.1, ge=0, lt=1, description="Stochastic depth rate inside GMG blocks.")
    head_dim: int = Field(512, gt=0, description="Hidden channels of the prediction heads.")
    head_layers: int = Field(3, ge=1, description="Convs per head tower (the last one predicts).")
    num_bins: int = Field(16, ge=1, description="Trident-head bins B (16 THUMOS14, 12 ActivityNet, 14 HACS).")
    cls_prior_prob: float = Field(0.01, gt=0, lt=1, description="Initial foreground probability of heads.")
    regression_range: Optional[list[tuple[float, float]]] = Field(
        None,
        description="Per level [min, max] of an action's larger regression distance, in feature steps; "
        "default [0,4], [4,8], ..., [2^(L), inf).",
    )
    center_sample_radius: float = Field(1.5, ge=0, description="Centre sampling radius, in level strides.")
    multi_label: bool = Field(
        False,
        description="Label assignment for dense, overlapping labels (MultiTHUMOS): a point is positive for every "
        "class with a qualifying action, not only the shortest action's.",
    )

    def level_ranges(self) -> list[tuple[float, float]]:
        if self.regression_range is not None:
            return [(float(lo), float(hi)) for lo, hi in self.regression_range]
        ranges = [(0.0, 4.0)] + [(2.0 ** (l + 1), 2.0 ** (l + 2)) for l in range(1, self.num_levels)]
        ranges[-1] = (ranges[-1][0], math.inf)
        return ranges

    @model_validator(mode="after")
    def _check_ranges(self):
        if self.regression_range is not None and len(self.regression_range) != self.num_levels:
            raise ValueError(
                f"regression_range has {len(self.regression_range)} entries; num_levels is {self.num_levels}"
            )
        return self

    @model_validator(mode="after")
    def _check_released(self):
        if self.variant == "paper":
            if self.released != ReleasedOptions():
                raise ValueError("model.released is set but model.variant is 'paper'; it applies only to 'released'")
            return self
        for key in ("encoder", "decoder", "gmg", "cltdr"):
            if getattr(self, key) != ModelConfig.model_fields[key].default:
                raise ValueError(
                    f"model.{key} is set but model.variant is 'released', whose encoder and decoder are the "
                    "released code's (model.released)"
                )
        return self

    @model_validator(mode="after")
    def _check_variant(self):
        for section, (part, name) in SECTION_OWNERS.items():
            if getattr(self, part) != name and getattr(self, section) != type(getattr(self, section))():
                raise ValueError(
                    f"model.{section} is set but model.{part} is {getattr(self, part)!r}; "
                    f"model.{section} applies only to {part} '{name}'"
                )
        heads = {
            "gmg": (self.gmg.global_ == "attention", "gmg.num_heads", self.gmg.num_heads),
            "transformer": (True, "transformer.num_heads", self.transformer.num_heads),
        }
        used, key, value = heads.get(self.encoder, (False, "", 1))
        if used and self.embed_dim % value:
            raise ValueError(f"model.{key}={value} does not divide model.embed_dim={self.embed_dim}")
        return self


def unread_sections(model: dict[str, Any]) -> set[str]:
    """The option sections that a model config does not read, from its ``variant``, ``encoder`` and ``decoder``
    (``model``: the config's model section as a dict; a missing key has its default). :data:`SECTION_OWNERS`."""

    def get(key: str) -> Any:
        return model.get(key, ModelConfig.model_fields[key].default)

    if get("variant") == "released":
        return set(SECTION_OWNERS)
    return {"released"} | {s for s, (part, name) in SECTION_OWNERS.items() if get(part) != name}


class LossConfig(_Section):
    """Loss of eq. 13 (varifocal + IoU-family), with the released code's normaliser and mix."""

    reg_loss: Literal["diou", "giou", "iou"] = Field("diou", description="IoU-family regression loss.")
    vfl_alpha: float = Field(0.75, ge=0, description="Varifocal weight of negatives.")
    vfl_gamma: float = Field(2.0, ge=0, description="Varifocal focusing exponent of negatives.")
    cls_target: Literal["iou", "binary"] = Field(
        "iou",
        description="Target of a positive (point, class) in the varifocal loss: 'iou' (the paper: the tIoU "
        "of its predicted segment) or 'binary' (the released code: 1, the loss weighted by tIoU^iou_weight_power).",
    )
    iou_weight_power: float = Field(0.2, ge=0, description="Exponent of the tIoU weight of cls_target 'binary'.")
    coarse_cls: Literal["focal", "varifocal"] = Field(
        "focal",
        description="Loss of the coarse (pre-refinement) classification, which the released code supervises "
        "beside the refined one (the paper describes the refined loss only): 'focal' (the released code, "
        "ActionFormer, TriDet: focal loss against the binary labels, so classification learns before the "
        "boundaries are good) or 'varifocal' (the refined loss, cls_target and all). Also the loss of "
        "decoders without refinement.",
    )
    focal_alpha: float = Field(0.25, description="Focal-loss weight of positives (negatives: 1 - this; < 0: none).")
    focal_gamma: float = Field(2.0, ge=0, description="Focal-loss focusing exponent.")
    refined_weight: float = Field(
        0.7, ge=0, le=1, description="Weight of the refined outputs' loss; the coarse ones get 1 - this."
    )
    normalizer: Literal["positives", "paper"] = Field(
        "positives",
        description="'positives': every term over an EMA of the positive count (released code); "
        "'paper': eq. 13 literally, negatives over the negative count.",
    )
    normalizer_momentum: float = Field(0.9, ge=0, lt=1, description="EMA momentum of the positive count.")
    normalizer_init: Optional[float] = Field(
        None,
        gt=0,
        description="Initial value of that EMA; None: the first training batch's positive count (the "
        "released code starts at 100, while a THUMOS14 or GTEA batch holds 13-200 positives).",
    )


class TrainConfig(_Section):
    """Optimisation (AdamW, linear warm-up + cosine decay, clipping, EMA)."""

    epochs: int = Field(20, ge=1, description="Epochs after warm-up (THUMOS14 I3D: 20 + 20 = the paper's 40 in all).")
    warmup_epochs: int = Field(20, ge=0, description="Epochs of linear warm-up from 0 to lr.")
    lr: float = Field(1e-4, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.035, ge=0, description="AdamW weight decay (not on norms and biases).")
    batch_size: int = Field(
        2,
        ge=1,
        description="Videos per batch and process: a run of N processes (torchrun) trains on global batches of "
        "N x batch_size videos, ceil(videos / (N x batch_size)) steps an epoch.",
    )
    clip_grad_norm: Optional[float] = Field(1.0, gt=0, description="Gradient clipping L2 norm (None: off).")
    ema_decay: Optional[float] = Field(0.999, gt=0, lt=1, description="Model EMA decay (None: no EMA).")
    ema_warmup: bool = Field(
        True,
        description="Warm the EMA decay up: step n uses min(ema_decay, (1 + n) / (10 + n)), so the EMA of a "
        "short schedule averages its last ~ninth instead of keeping the initial weights (false: the constant "
        "decay of the released code).",
    )
    seed: int = Field(2024, description="Seed of initialisation, crops and noise.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    device: Annotated[str, AfterValidator(_device)] = Field(
        "auto", description="'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'."
    )
    log_every: int = Field(20, ge=1, description="Iterations between log lines.")
    amp: Literal["none", "bf16", "fp16"] = Field(
        "none",
        description="Mixed precision of training: the network under autocast in bf16 or fp16 (fp16 with a "
        "GradScaler, saved in checkpoints), the FFT branch and the losses in fp32; 'none': fp32 throughout. bf16 "
        "also works on the CPU.",
    )


@dataclass(frozen=True)
class PostprocessOptions:
    """How raw predictions become detections (defaults: the THUMOS14 setting of the released code).

    score_threshold: candidates whose probability is not above this are dropped before NMS; Soft-NMS also
        drops detections whose decayed score falls below it.
    pre_nms_topk: at most this many (step, class) candidates are kept per pyramid level, highest first.
    min_segment_length: candidates shorter than this, in grid steps, are dropped before NMS.
    nms_sigma: width of the Gaussian Soft-NMS decay, ``score *= exp(-iou**2 / nms_sigma)``.
    voting_iou: score voting after Soft-NMS: each kept segment becomes the weighted mean of the candidates of
        its class that overlap it by at least this IoU; None turns voting off.
    voting_weight: a voter's weight: 'score_iou' (its score x its IoU with the kept segment) or 'score' (its
        score alone, the released code's ActivityNet setting).
    max_detections: at most this many detections per video are returned, highest scores first.
    max_per_class: at most this many detections per class and video (None: no limit), applied before
        ``max_detections``.
    class_agnostic_nms: when True a detection also decays (and votes with) candidates of other classes.

    Two presets (:data:`PRESETS`, :meth:`preset`): ``benchmark``, the defaults, keeps everything the mAP protocol
    rewards (a low threshold and thousands of detections per video: a low-ranked detection can only add recall);
    ``deployment`` returns what a person would read: scores above 0.2, at most 100 detections and 20 per
    class, stronger suppression of overlapping duplicates, no voting.
    """

    score_threshold: float = 1e-3
    pre_nms_topk: int = 2000
    min_segment_length: float = 0.05
    nms_sigma: float = 0.5
    voting_iou: float | None = 0.7
    voting_weight: Literal["score_iou", "score"] = "score_iou"
    max_detections: int = 2000
    max_per_class: int | None = None
    class_agnostic_nms: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must lie in [0, 1], got {self.score_threshold}")
        if self.pre_nms_topk < 1:
            raise ValueError(f"pre_nms_topk must be >= 1, got {self.pre_nms_topk}")
        if self.min_segment_length < 0:
            raise ValueError(f"min_segment_length must be >= 0, got {self.min_segment_length}")
        if not self.nms_sigma > 0:
            raise ValueError(f"nms_sigma must be > 0, got {self.nms_sigma}")
        if self.voting_weight not in ("score_iou", "score"):
            raise ValueError(f"voting_weight must be 'score_iou' or 'score', got {self.voting_weight!r}")
        if self.voting_iou is not None and not 0.0 <= self.voting_iou <= 1.0:
            raise ValueError(f"voting_iou must lie in [0, 1] or be None, got {self.voting_iou}")
        if self.max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {self.max_detections}")
        if self.max_per_class is not None and self.max_per_class < 1:
            raise ValueError(f"max_per_class must be >= 1 or None, got {self.max_per_class}")

    @classmethod
    def preset(cls, name: str, **overrides) -> PostprocessOptions:
        """The options of preset ``name`` (see :data:`PRESETS`), with ``overrides`` replacing some of them."""
        if name not in PRESETS:
            raise ValueError(f"unknown post-processing preset {name!r}; expected one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


# benchmark: the defaults above (the released code's THUMOS14 setting). deployment: few, confident detections.
PRESETS: dict[str, dict] = {
    "benchmark": {},
    "deployment": dict(
        score_threshold=0.2, pre_nms_topk=500, nms_sigma=0.1, voting_iou=None, max_detections=100, max_per_class=20
    ),
}


class TestConfig(_Section):
    """Post-processing and evaluation (SPEC sections 3 and 4).

    ``preset`` picks the post-processing (``cltdr.inference.postprocess.PRESETS``; the README compares them):
    'benchmark' keeps the many low-scored detections the mAP protocol rewards, 'deployment' a few confident
    ones. A post-processing key given in the file (or with --set) overrides the preset; a key left out follows
    it, and stays out of a run's saved config.yaml, so that `cltdr test/detect --preset` still applies to it.
    """

    __test__ = False  # not a pytest class

    preset: Literal["benchmark", "deployment"] = Field(
        "benchmark", description="Post-processing preset (PostprocessOptions.preset); the keys below override it."
    )
    # The keys of PostprocessOptions, which states what each means, its default and its valid range.
    score_threshold: Optional[float] = Field(None, description="PostprocessOptions.score_threshold.")
    pre_nms_topk: Optional[int] = Field(None, description="PostprocessOptions.pre_nms_topk.")
    min_segment_length: Optional[float] = Field(None, description="PostprocessOptions.min_segment_length.")
    nms_sigma: Optional[float] = Field(None, description="PostprocessOptions.nms_sigma.")
    voting_iou: Optional[float] = Field(None, description="PostprocessOptions.voting_iou; null: no voting.")
    voting_weight: Optional[Literal["score_iou", "score"]] = Field(
        None, description="PostprocessOptions.voting_weight."
    )
    max_detections: Optional[int] = Field(None, description="PostprocessOptions.max_detections.")
    max_per_class: Optional[int] = Field(None, description="PostprocessOptions.max_per_class; null: no limit.")
    window: Optional[int] = Field(
        None,
        ge=1,
        description="Videos longer than this many input steps run in overlapping windows of this length, "
        "so that memory depends on the window, not on the video (inference/windowed.py); null: 4 x "
        "dataset.max_seq_len. Each window's FFT branch sees only that window.",
    )
    window_overlap: Optional[int] = Field(
        None,
        ge=0,
        description="Steps consecutive windows share: an action is found whole when it fits in them; "
        "null: dataset.max_seq_len, the longest crop training showed the model.",
    )
    tiou_thresholds: list[TIoU] = Field(
        [0.3, 0.4, 0.5, 0.6, 0.7], min_length=1, description="tIoU thresholds of the mAP."
    )
    amp: Literal["none", "bf16", "fp16"] = Field(
        "none",
        description="Mixed precision of inference (validation, `cltdr test`, `detect`; --amp replaces it): the "
        "network under autocast in bf16 or fp16, the FFT branch and post-processing in fp32; 'none': fp32.",
    )

    @model_validator(mode="after")
    def _check_postprocess(self):
        self.postprocess()  # the ranges of PostprocessOptions
        return self

    def postprocess(self) -> PostprocessOptions:
        """The post-processing this section asks for: the preset with the keys set explicitly."""
        return PostprocessOptions.preset(self.preset, **self.postprocess_overrides())

    def postprocess_overrides(self) -> dict[str, Any]:
        """The post-processing keys set explicitly (null only counts where it means off: voting, per-class)."""
        return {
            key: getattr(self, key)
            for key in _POSTPROCESS_KEYS
            if key in self.model_fields_set and (getattr(self, key) is not None or key in _NULLABLE_KEYS)
        }

    @model_serializer(mode="wrap")
    def _dump_set_keys_only(self, handler):
        data = handler(self)
        return {
            key: value for key, value in data.items() if key not in _POSTPROCESS_KEYS or key in self.model_fields_set
        }


_POSTPROCESS_KEYS = tuple(f.name for f in dataclasses.fields(PostprocessOptions) if f.name in TestConfig.model_fields)
_NULLABLE_KEYS = ("voting_iou", "max_per_class")


def pyramid_divisor(num_levels: int) -> int:
    """The coarsest stride of an L-level pyramid, 2^(L-1): every input length must be a multiple of it."""
    return 2 ** (num_levels - 1)


class Config(_Section):
    """A whole experiment: one YAML file with these five sections."""

    dataset: DatasetConfig
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    test: TestConfig = TestConfig()

    @model_validator(mode="after")
    def _check_lengths(self):
        divisor = self.divisor
        if self.dataset.max_seq_len < divisor:
            raise ValueError(
                f"dataset.max_seq_len={self.dataset.max_seq_len} is shorter than the coarsest stride "
                f"{divisor} of a {self.model.num_levels}-level pyramid"
            )
        window, overlap = self.inference_window()
        if overlap >= window:
            raise ValueError(
                f"test.window_overlap={overlap} must be shorter than test.window={window}: consecutive windows "
                "would not advance"
            )
        if self.dataset.resize_to is not None and self.dataset.resize_to < divisor:
            raise ValueError(
                f"dataset.resize_to={self.dataset.resize_to} is shorter than the coarsest stride "
                f"{divisor} of a {self.model.num_levels}-level pyramid"
            )
        return self

    @property
    def divisor(self) -> int:
        """Batches are padded to a multiple of this, the coarsest pyramid stride."""
        return pyramid_divisor(self.model.num_levels)

    def inference_window(self) -> tuple[int, int]:
        """(window, overlap) of windowed inference in input steps: test.window (4 x dataset.max_seq_len) and
        test.window_overlap (dataset.max_seq_len)."""
        window = self.test.window or 4 * self.dataset.max_seq_len
        overlap = self.dataset.max_seq_len if self.test.window_overlap is None else self.test.window_overlap
        return window, overlap

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
