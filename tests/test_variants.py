"""Every encoder and decoder variant: builds, trains a step, is padding-invariant; each switch does what its
docstring says; invalid combinations are config errors that name the key."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cltdr.config import Config, GMGOptions, config_from_dict
from cltdr.errors import ConfigError
from cltdr.model import build_detector, count_parameters
from cltdr.model.actionformer import ActionFormerDecoder, relu_passing_gradient
from cltdr.model.attention import MaskedMultiHeadAttention, attend
from cltdr.model.cltdr import CLTDRDecoder, CrossLevelFusion, upsample
from cltdr.model.gmg import GMGBlock
from cltdr.model.sgp import SGPMixer, sgp_kernels

K = 5

# name -> model overrides; the first is the default CLTDR-GMG.
VARIANTS = {
    "default": {},
    "enc_transformer": {"encoder": "transformer", "transformer": {"num_heads": 2, "window_size": 5}},
    "enc_sgp": {"encoder": "sgp", "sgp": {"window_size": 3, "k": 1.5}},
    "enc_maxpool": {"encoder": "maxpool"},
    "enc_conv": {"encoder": "conv"},
    "dec_actionformer": {"decoder": "actionformer"},
    "dec_trident": {"decoder": "trident"},
    "gmg_instant": {"gmg": {"local": False, "global": "none"}},
    "gmg_local": {"gmg": {"instant": False, "global": "none"}},
    "gmg_global": {"gmg": {"instant": False, "local": False}},
    "gmg_instant_global": {"gmg": {"local": False}},
    "gmg_no_gate": {"gmg": {"gate": False}},
    "gmg_attention": {"gmg": {"global": "attention", "num_heads": 2}},
    # every released form of the GMG block and of the decoder at once (each alone: test_model.py)
    "gmg_released_forms": {
        "gmg": {
            "filter": "spectral",
            "gate_form": "product",
            "gate_init": "zero",
            "instant_depthwise": True,
            "local_kernel": 1,
            "layer_scale": 1e-4,
            "stem_drop_path": False,
        },
        "cltdr": {
            "score": "logit_product",
            "offsets": "grid",
            "clff_depthwise": False,
            "fusion_kernel": 1,
            "boundary_input": "level",
            "center_scale": True,
            "offset_kernel": 7,
        },
    },
    "cls_none": {"cltdr": {"cls_levels": []}},
    "cls_both_reg_both": {"cltdr": {"cls_levels": ["above", "below"], "reg_levels": ["below", "above"]}},
    "refine_none": {"cltdr": {"refine": "none"}},
    "refine_cls": {"cltdr": {"refine": "cls"}},
    "refine_reg": {"cltdr": {"refine": "reg"}},
    "fusion_add": {"cltdr": {"fusion": "add"}},
    "fusion_concat": {"cltdr": {"fusion": "concat", "cls_levels": ["above", "below"]}},
    "levels_1": {"num_levels": 1},
    "levels_2": {"num_levels": 2},
    "levels_8_transformer": {"num_levels": 8, "encoder": "transformer", "transformer": {"window_size": 3}},
}


def _mask(lengths, T):
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]


def small_cfg(**model) -> Config:
    base = {"embed_dim": 16, "num_levels": 4, "ffn_dim": 24, "head_dim": 16, "num_bins": 4, "drop_path": 0.0}
    return config_from_dict(
        {
            "dataset": {"annotation_file": "a.json", "feat_dir": "f", "input_dim": 12, "max_seq_len": 256},
            "model": {**base, **model},
        }
    )


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_trains_a_step_and_is_padding_invariant(name):
    torch.manual_seed(0)
    cfg = small_cfg(**VARIANTS[name])
    model = build_detector(cfg, K)
    assert count_parameters(model) > 0
    d = model.divisor
    T = max(4 * d, 64)
    n = T - d - 3  # shorter than T, not a multiple of the divisor
    x = torch.randn(2, 12, T)
    mask = _mask([T, n], T)
    x = x * mask[:, None]

    # One training step: finite loss with positives, and every parameter receives a gradient.
    model.train()
    segs = [torch.tensor([[3.0, 20.0], [30.0, 60.0]]), torch.tensor([[10.0, 12.0]])]
    losses = model.loss(x, mask, segs, [torch.tensor([0, 4]), torch.tensor([1])])
    assert losses["num_pos"] > 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    unused = [p for p, v in model.named_parameters() if v.grad is None]
    assert not unused, f"parameters without gradient: {unused}"

    # The same video alone (padded to its own divisor multiple) and in a longer padded batch: same outputs.
    model.eval()
    out = model(x, mask)
    P = sum(out.level_sizes)
    assert out.cls_logits.shape == (2, P, K) and out.distances.shape == (2, P, K, 2)
    batch = model.predict(x, mask)[1]
    alone_len = -(-n // d) * d
    alone = model.predict(x[1:, :, :alone_len], mask[1:, :alone_len])[0]
    assert len(alone[0]) == cfg.model.num_levels
    for a, b in zip(alone[0] + alone[1], batch[0] + batch[1]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    model.train()
    model.loss_normalizer.fill_(50.0)
    l1 = model.loss(x[1:, :, :alone_len], mask[1:, :alone_len], segs[1:], [torch.tensor([1])])
    model.loss_normalizer.fill_(50.0)
    l2 = model.loss(x[1:], mask[1:], segs[1:], [torch.tensor([1])])
    torch.testing.assert_close(l1["loss"], l2["loss"], atol=1e-5, rtol=1e-4)


def test_one_level_pyramid_regresses_every_length():
    cfg = small_cfg(num_levels=1)
    assert cfg.model.level_ranges() == [(0.0, math.inf)]
    assert cfg.divisor == 1


# ------------------------------------------------------------------------------------------------ GMG switches
def _branches(block: GMGBlock, x: torch.Tensor):
    h = block.norm(x)
    f_instant = (
        F.conv1d(h, block.mixer.instant.weight, block.mixer.instant.bias) if block.mixer.instant is not None else None
    )
    f_local = (
        F.conv1d(h, block.mixer.local.weight, block.mixer.local.bias, padding=1, groups=x.shape[1])
        if block.mixer.local is not None
        else None
    )
    f_global = (
        block.mixer.global_filter(h, torch.ones(h.shape[0], h.shape[-1], dtype=torch.bool))
        if block.mixer.global_filter is not None
        else None
    )
    return f_instant, f_local, f_global


@pytest.mark.parametrize(
    "switches, formula",
    [
        ({"gate": False}, lambda i, l, g: i + l + g),
        ({"global": "none"}, lambda i, l, g: F.relu(l) * i + l),
        ({"local": False}, lambda i, l, g: i + g),
        ({"instant": False}, lambda i, l, g: F.relu(g) * l + g),
        ({"instant": False, "global": "none"}, lambda i, l, g: l),
        ({"local": False, "global": "none", "gate": False}, lambda i, l, g: i),
    ],
)
def test_gmg_switches_follow_the_documented_eq4(switches, formula):
    torch.manual_seed(0)
    block = GMGBlock(8, 16, drop_path=0.0, options=GMGOptions(**switches)).eval()
    x = torch.randn(2, 8, 12)
    mask = torch.ones(2, 12, dtype=torch.bool)
    f = x + formula(*_branches(block, x))
    norm = block.ffn_norm
    expected = f + block.ffn(F.group_norm(f, norm.num_groups, norm.weight, norm.bias))
    torch.testing.assert_close(block(x, mask), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "switches, formula",
    [
        ({"gate_form": "product"}, lambda h, i, l, g: i * (l * g) + l * g + g + h),
        ({"gate_form": "product", "global": "none"}, lambda h, i, l, g: i * l + l + h),
        ({"gate_form": "product", "local": False}, lambda h, i, l, g: i + g + h),
        ({"gate_form": "product", "filter": "spectral", "instant_depthwise": True, "local_kernel": 1}, None),
    ],
)
def test_gmg_product_form_is_the_released_formula(switches, formula):
    """gate_form 'product' (released code): f = FC(h) * f_l + f_l + f_g + h, f_l = Conv(h) * f_g, h = LN(x);
    with the spectral filter, a per-channel FC and a kernel-1 Conv it is their SGPBlock's mixer."""
    torch.manual_seed(0)
    opts = GMGOptions(**switches)
    block = GMGBlock(8, 16, drop_path=0.0, options=opts).eval()
    x = torch.randn(2, 8, 12)
    mask = torch.ones(2, 12, dtype=torch.bool)
    h = block.norm(x)
    mixer = block.mixer
    if formula is None:  # the released mixer: per-channel affine maps and their spectral filter
        fc, conv = mixer.instant, mixer.local
        assert fc.weight.shape == (8, 1, 1) and conv.weight.shape == (8, 1, 1)
        f_g = mixer.global_filter(h, mask)
        f_l = (h * conv.weight[:, 0] + conv.bias[:, None]) * f_g
        f = x + (h * fc.weight[:, 0] + fc.bias[:, None]) * f_l + f_l + f_g + h
    else:
        i, l = F.conv1d(h, mixer.instant.weight, mixer.instant.bias), None
        if mixer.local is not None:
            l = F.conv1d(h, mixer.local.weight, mixer.local.bias, padding=1, groups=8)
        g = mixer.global_filter(h, mask) if mixer.global_filter is not None else None
        f = x + formula(h, i, l, g)
    norm = block.ffn_norm
    expected = f + block.ffn(F.group_norm(f, norm.num_groups, norm.weight, norm.bias))
    torch.testing.assert_close(block(x, mask), expected, atol=1e-5, rtol=1e-5)


def test_masked_spectral_filter_is_the_released_filter_per_video_and_exports_as_dft():
    """filter 'spectral' in the paper variant: each video filtered over its own valid steps (zero beyond), the
    released SpectralFilter's output; the matrix-product path used for export gives the same."""
    from cltdr.model.gmg import MaskedSpectralFilter, SpectralFilter

    torch.manual_seed(0)
    f = MaskedSpectralFilter(6).double()
    with torch.no_grad():
        for p in f.parameters():
            p.normal_()
    x, mask = torch.randn(2, 6, 16, dtype=torch.float64), _mask([16, 9], 16)
    x = x * mask[:, None]
    out = f(x, mask)
    torch.testing.assert_close(out[1:, :, :9], SpectralFilter.filtered(f, x[1:, :, :9]))
    assert torch.equal(out[1, :, 9:], torch.zeros(6, 7, dtype=torch.float64))
    traced = torch.jit.trace(f, (x, mask), check_trace=False)
    torch.testing.assert_close(traced(x, mask), out)
    other = _mask([12, 5], 16)  # other lengths: the trace follows the mask, it did not record the lengths
    torch.testing.assert_close(traced(x * other[:, None], other), f(x * other[:, None], other))


def test_gmg_zero_gate_init_layer_scale_and_stem_drop_path():
    """gate_init 'zero': FC and Conv start at 0 (weights and biases), so the block starts as its global term
    (relu form: f = x + f_g). layer_scale: the blocks after each max-pool (not the stem) scale both residual
    branches, from the value. stem_drop_path false: no stochastic depth in the full-resolution blocks."""
    from cltdr.model.gmg import GMGEncoder

    torch.manual_seed(0)
    opts = GMGOptions(gate_init="zero", layer_scale=1e-4, stem_drop_path=False)
    enc = GMGEncoder(12, 8, 3, ffn_dim=16, drop_path=0.1, options=opts)
    assert all(b.scales is None and b.drop_path.p == 0.0 for b in enc.stem)
    assert all(torch.equal(b.scales, torch.full((2, 8, 1), 1e-4)) and b.drop_path.p == 0.1 for b in enc.branch)
    block = enc.stem[0].eval()
    for conv in (block.mixer.instant, block.mixer.local):
        assert not conv.weight.any() and not conv.bias.any()
    x, mask = torch.randn(2, 8, 12), torch.ones(2, 12, dtype=torch.bool)
    h = block.norm(x)
    torch.testing.assert_close(block.mixer(h, mask), block.mixer.global_filter(h, mask))
    scaled = enc.branch[0].eval()
    with torch.no_grad():
        scaled.scales.copy_(torch.rand(2, 8, 1))
    s1, s2 = scaled.scales
    y = x + s1 * scaled.mixer(scaled.norm(x), mask)
    norm = scaled.ffn_norm
    expected = y + s2 * scaled.ffn(F.group_norm(y, norm.num_groups, norm.weight, norm.bias))
    torch.testing.assert_close(scaled(x, mask), expected, atol=1e-5, rtol=1e-5)


def test_gmg_attention_global_branch_is_masked_self_attention():
    torch.manual_seed(0)
    block = GMGBlock(8, 16, drop_path=0.0, options=GMGOptions(**{"global": "attention", "num_heads": 2}))
    attn = block.mixer.global_filter
    assert isinstance(attn, MaskedMultiHeadAttention) and attn.window is None
    h = torch.randn(1, 8, 10)
    mask = _mask([7], 10)
    out = attn(h * mask[:, None], mask)
    q, k, v = (lin(h[..., :7]).view(2, 4, 7) for lin in (attn.query, attn.key, attn.value))  # (H, E, T)
    a = torch.softmax(torch.einsum("het,hes->hts", q, k) / 2.0, -1)
    expected = attn.proj(torch.einsum("hts,hes->het", a, v).reshape(1, 8, 7))
    torch.testing.assert_close(out[..., :7], expected, atol=1e-5, rtol=1e-5)
    assert out[..., 7:].abs().max() == 0


# ------------------------------------------------------------------------------------------------- attention
def test_local_window_attention_against_a_loop():
    torch.manual_seed(0)
    B, H, T, E, W = 2, 2, 9, 3, 5
    q, k, v = torch.randn(3, B, H, T, E).unbind(0)
    mask = _mask([9, 6], T)
    out = attend(q, k, v, mask, window=W)
    for b in range(B):
        for t in range(int(mask[b].sum())):
            keys = [s for s in range(t - W // 2, t + W // 2 + 1) if 0 <= s < T and mask[b, s]]
            w = torch.softmax(q[b, :, t, None] @ k[b, :, keys].transpose(1, 2) / math.sqrt(E), -1)  # (H, 1, S)
            torch.testing.assert_close(out[b, :, t], (w @ v[b, :, keys])[:, 0], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(out).all()


def test_strided_attention_block_halves_the_length():
    att = MaskedMultiHeadAttention(8, 2, window=3, stride=2, conv_qkv=True)
    assert att(torch.randn(2, 8, 16), _mask([16, 9], 16)).shape == (2, 8, 8)
    with pytest.raises(ValueError, match="conv_qkv"):
        MaskedMultiHeadAttention(8, 2, stride=2)


# ------------------------------------------------------------------------------------------------------- SGP
def test_sgp_mixer_is_tridets_formula():
    torch.manual_seed(0)
    assert sgp_kernels(1, 5.0) == (1, 11) and sgp_kernels(3, 1.5) == (3, 7)
    mix = SGPMixer(4, window_size=3, k=1.5)
    h = torch.randn(1, 4, 10)
    mask = torch.ones(1, 10, dtype=torch.bool)

    def dw(conv, x):
        return F.conv1d(x, conv.weight, conv.bias, padding=conv.weight.shape[-1] // 2, groups=4)

    phi = F.relu(dw(mix.global_fc, h.mean(-1, keepdim=True)))
    expected = dw(mix.fc, h) * phi + (dw(mix.conv_w, h) + dw(mix.conv_kw, h)) * dw(mix.psi, h) + h
    torch.testing.assert_close(mix(h, mask), expected, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------------- decoders
def test_actionformer_decoder_distances_are_scaled_relu_and_class_agnostic():
    torch.manual_seed(0)
    dec = ActionFormerDecoder(6, 3, 2, head_dim=8)
    with torch.no_grad():
        dec.scales.copy_(torch.tensor([1.0, 2.5]))
    feats = [torch.randn(1, 6, 8), torch.randn(1, 6, 4)]
    masks = [torch.ones(1, 8, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool)]
    out = dec(feats, masks)
    for l, o in enumerate(out):
        raw = dec.reg_head(feats[l], masks[l])  # (1, 2, T)
        torch.testing.assert_close(o.distances[:, :, 0], F.relu(dec.scales[l] * raw).transpose(1, 2))
        assert o.distances.shape[2] == 3 and (o.distances == o.distances[:, :, :1]).all()
        assert o.refine_logits is None and o.refine_offsets is None


def test_actionformer_distances_clipped_at_zero_still_learn():
    # A plain ReLU gives a negative output no gradient, so a channel negative everywhere never recovers.
    x = torch.tensor([-2.0, -0.5, 0.0, 0.7, 3.0], requires_grad=True)
    y = relu_passing_gradient(x)
    assert torch.equal(y, F.relu(x.detach()))
    (y * torch.arange(1.0, 6.0)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(1.0, 6.0))
    dec = ActionFormerDecoder(6, 3, 1, head_dim=8)
    with torch.no_grad():
        dec.reg_head.out.bias.fill_(-100.0)  # every distance clipped to 0
    feats, masks = [torch.randn(1, 6, 8)], [torch.ones(1, 8, dtype=torch.bool)]
    dist = dec(feats, masks)[0].distances
    assert (dist == 0).all()
    (-dist.sum()).backward()  # a loss that wants longer distances
    assert dec.reg_head.out.bias.grad is not None and (dec.reg_head.out.bias.grad < 0).all()


def test_unrefined_outputs_fall_back_to_the_coarse_ones():
    torch.manual_seed(0)
    model = build_detector(small_cfg(decoder="trident"), K).eval()
    assert model.decoder.clff is None and model.decoder.refine_cls is None
    x = torch.randn(1, 12, 64)
    out = model(x, torch.ones(1, 64, dtype=torch.bool))
    assert not out.refined
    torch.testing.assert_close(out.refined_log_prob, F.logsigmoid(out.cls_logits))
    assert out.refined_distances is out.distances


@pytest.mark.parametrize("mode", ["add", "concat"])
def test_cross_level_fusion_modes(mode):
    torch.manual_seed(0)
    D, T = 4, 8
    mod = CrossLevelFusion(D, upsample(D), mode=mode)
    p, other = torch.randn(1, D, T), torch.randn(1, D, T // 2)
    mask = torch.ones(1, T, dtype=torch.bool)
    f_n = mod.resample(other)
    if mode == "add":
        expected = p + f_n
    else:
        f_l = F.conv1d(p, mod.conv.weight, mod.conv.bias, padding=1)
        expected = p + F.conv1d(torch.cat([f_n, f_l], 1), mod.proj.weight, mod.proj.bias)
    torch.testing.assert_close(mod(p, mask, other), expected)


def test_cltdr_level_choices_build_the_matching_modules():
    dec = CLTDRDecoder(8, 3, head_dim=8, num_bins=2, cls_levels=("above", "below"), reg_levels=(), refine="reg")
    assert dec.dcm.above is not None and dec.dcm.below is not None
    assert dec.drm.above is None and dec.drm.below is None
    assert dec.refine_cls is None and dec.refine_reg is not None


# ----------------------------------------------------------------------------------------------------- config
def test_default_config_is_cltdr_gmg_and_round_trips():
    cfg = small_cfg()
    m = cfg.model
    assert (
        m.encoder,
        m.decoder,
        m.gmg.global_,
        m.gmg.gate,
        m.cltdr.cls_levels,
        m.cltdr.reg_levels,
        m.cltdr.refine,
        m.cltdr.fusion,
    ) == ("gmg", "cltdr", "fft", True, ["above"], ["below"], "both", "attention")
    dumped = cfg.model_dump(mode="json")
    assert dumped["model"]["gmg"]["global"] == "fft"  # the YAML key, not the Python name
    assert Config.model_validate(dumped) == cfg
    assert Config.model_validate(cfg.model_dump()) == cfg  # what resolve_paths does


@pytest.mark.parametrize(
    "model, key",
    [
        ({"gmg": {"globl": "fft"}}, "unknown key 'model.gmg.globl'"),
        ({"gmg": {"global_": "fft"}}, "unknown key 'model.gmg.global_'"),
        ({"gmg": {"global": "conv"}}, "model.gmg.global"),
        ({"gmg": {"instant": False, "local": False, "global": "none"}}, "model.gmg: at least one"),
        ({"encoder": "sgp", "gmg": {"gate": False}}, "model.gmg is set but model.encoder is 'sgp'"),
        ({"decoder": "actionformer", "cltdr": {"refine": "none"}}, "model.cltdr is set but model.decoder"),
        ({"encoder": "transformer", "transformer": {"window_size": 4}}, "window_size': Value error, must be odd"),
        ({"encoder": "transformer", "transformer": {"num_heads": 3}}, "model.transformer.num_heads=3 does not divide"),
        ({"gmg": {"global": "attention", "num_heads": 5}}, "model.gmg.num_heads=5 does not divide"),
        ({"cltdr": {"cls_levels": ["above", "above"]}}, "model.cltdr.cls_levels lists a level twice"),
        ({"cltdr": {"reg_levels": ["left"]}}, "model.cltdr.reg_levels.0"),
        ({"encoder": "mamba"}, "model.encoder"),
    ],
)
def test_invalid_variant_configs_name_the_key(model, key):
    with pytest.raises(ConfigError) as err:
        small_cfg(**model)
    assert key in str(err.value)
