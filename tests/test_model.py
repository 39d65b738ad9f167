"""The paper's equations, each against an independent computation, and masking of every block."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cltdr.config import config_from_dict
from cltdr.errors import ConfigError
from cltdr.model import build_detector, count_parameters
from cltdr.model.cltdr import CLTDRDecoder, CrossLevelFusion, downsample, upsample
from cltdr.model.gmg import GlobalFilter, GMGBlock, GMGEncoder, masked_group_norm
from cltdr.model.layers import masked_max_pool
from cltdr.model.outputs import refine_distances, refined_log_prob
from cltdr.model.trident import trident_distances

torch.manual_seed(0)


def _mask(lengths, T):
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]


def small_cfg(**model):
    return config_from_dict(
        {
            "dataset": {"annotation_file": "a.json", "feat_dir": "f", "input_dim": 12, "max_seq_len": 64},
            "model": {
                "embed_dim": 16,
                "num_levels": 4,
                "ffn_dim": 24,
                "head_dim": 16,
                "num_bins": 4,
                "drop_path": 0.0,
                **model,
            },
        }
    )


# ------------------------------------------------------------------------------------------ GMG (eqs. 1-4)
def test_global_filter_matches_explicit_dft():
    """Eqs. 1-3 with an explicit DFT matrix: X_f = F x, W = Conv(ReLU(Conv([Re X_f, Im X_f]))), IDFT(X_f * W)."""
    D, T = 3, 10
    gf = GlobalFilter(D)
    x = torch.randn(1, D, T, dtype=torch.float64)
    gf = gf.double()
    t = np.arange(T)
    u = np.arange(T // 2 + 1)
    dft = np.exp(-2j * np.pi * np.outer(t, u) / T) / math.sqrt(T)  # (T, F), orthonormal
    X = x[0].numpy() @ dft  # (D, F)
    parts = torch.from_numpy(np.concatenate([X.real, X.imag]))[None]
    w = gf.conv2(F.relu(gf.conv1(parts)))[0].detach().numpy()
    Y = X * (w[:D] + 1j * w[D:])
    # Inverse of a real signal's half spectrum: mirror the conjugate for the missing bins.
    full = np.zeros((D, T), complex)
    full[:, : T // 2 + 1] = Y
    full[:, T // 2 + 1 :] = np.conj(Y[:, 1 : (T + 1) // 2][:, ::-1])
    # irfft ignores the imaginary part of the DC (and Nyquist) bins; so does this reference.
    full[:, 0] = full[:, 0].real
    if T % 2 == 0:
        full[:, T // 2] = full[:, T // 2].real
    ref = (full @ np.exp(2j * np.pi * np.outer(np.arange(T), np.arange(T)) / T).T).real / math.sqrt(T)
    out = gf(x, torch.ones(x.shape[0], x.shape[-1], dtype=torch.bool))[0].detach().numpy()
    np.testing.assert_allclose(out, ref, atol=1e-10)


@pytest.mark.parametrize("filter_", ["conv", "spectral"])
def test_global_filter_starts_small_and_the_blocks_near_the_identity(filter_):
    """Both FFT filters start at N(0, 0.02) (the conv filter's convs: model.gmg.filter_init_std), so the global
    term (quadratic in the input) starts near zero and two full-resolution GMG blocks keep the activations' scale
    (with PyTorch's default conv init the conv filter grew it up to 10x on real features, and training was
    seed-dependent)."""
    from cltdr.config import GMGOptions
    from cltdr.model.gmg import GMGEncoder

    for seed in range(3):
        torch.manual_seed(seed)
        options = GMGOptions(filter=filter_, filter_init_std=0.02)
        enc = GMGEncoder(32, 64, 3, ffn_dim=96, drop_path=0.0, options=options)
        for block in enc.stem:
            gf = block.mixer.global_filter
            params = (*gf.conv1.parameters(), *gf.conv2.parameters()) if filter_ == "conv" else gf.parameters()
            for p in params:
                assert abs(float(p.detach().std()) - 0.02) < 0.006 and abs(float(p.detach().mean())) < 0.01
        x, mask = torch.randn(2, 32, 256), torch.ones(2, 256, dtype=torch.bool)
        with torch.no_grad():
            h = enc.projection(x, mask)
            start = float(h.std())
            assert float(enc.stem[0].mixer.global_filter(h, mask).std()) < 0.05 * start
            for block in enc.stem:
                h = block(h, mask)
        assert float(h.std()) < 1.5 * start
    default = GlobalFilter(8, 3, init_std=None)
    assert float(default.conv1.weight.detach().std()) > 0.1  # PyTorch's default init (fan-in 3): U(-0.58, 0.58)


def test_gmg_fusion_is_eq4():
    block = GMGBlock(8, 16, drop_path=0.0).eval()
    x = torch.randn(2, 8, 12)
    mask = torch.ones(2, 12, dtype=torch.bool)
    h = block.norm(x)
    f_local = F.conv1d(h, block.mixer.local.weight, block.mixer.local.bias, padding=1, groups=8)
    f_instant = F.conv1d(h, block.mixer.instant.weight, block.mixer.instant.bias)
    f_global = block.mixer.global_filter(h, torch.ones(h.shape[0], h.shape[-1], dtype=torch.bool))
    f = x + F.relu(f_local) * f_instant + F.relu(f_global) * f_local + f_global
    expected = f + block.ffn(F.group_norm(f, block.ffn_norm.num_groups, block.ffn_norm.weight, block.ffn_norm.bias))
    torch.testing.assert_close(block(x, mask), expected, atol=1e-5, rtol=1e-5)


def test_masked_group_norm_equals_group_norm_on_the_valid_part():
    norm = torch.nn.GroupNorm(4, 8)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(2, 8, 10)
    mask = _mask([10, 6], 10)
    out = masked_group_norm(norm, x, mask)
    torch.testing.assert_close(out[1, :, :6], norm(x[1:, :, :6])[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[0], norm(x[:1])[0], atol=1e-5, rtol=1e-5)
    assert out[1, :, 6:].abs().max() == 0


def test_masked_max_pool_never_takes_padding():
    x = -torch.rand(1, 2, 8) - 1.0  # all valid values negative: a padded zero would win an unmasked max
    mask = _mask([5], 8)
    out, m = masked_max_pool(x * mask[:, None], mask)
    ref = torch.stack([x[0, :, max(0, 2 * t - 1) : min(5, 2 * t + 2)].max(-1).values for t in range(3)], -1)
    torch.testing.assert_close(out[0, :, :3], ref)
    assert m.tolist() == [[True, True, True, False]]
    assert out[0, :, 3].abs().max() == 0


def test_encoder_pyramid_shapes_and_strides():
    enc = GMGEncoder(12, 16, 4, ffn_dim=24, drop_path=0.0)
    feats, masks = enc(torch.randn(2, 12, 64), _mask([64, 40], 64))
    assert [f.shape[-1] for f in feats] == [64, 32, 16, 8]
    assert [int(m[1].sum()) for m in masks] == [40, 20, 10, 5]
    assert all(f.shape[1] == 16 for f in feats)


# ----------------------------------------------------------------------------------------- CLTDR (eqs. 5-12)
@pytest.mark.parametrize("direction", ["up", "down"])
def test_cross_level_attention_is_eqs_5_to_8(direction):
    D, T = 6, 8
    resample = upsample(D) if direction == "up" else downsample(D)
    mod = CrossLevelFusion(D, resample, mode="attention")
    p = torch.randn(2, D, T)
    other = torch.randn(2, D, T // 2 if direction == "up" else 2 * T)
    mask = torch.ones(2, T, dtype=torch.bool)
    f_n = resample(other)
    f_l = F.conv1d(p, mod.conv.weight, mod.conv.bias, padding=1)
    gap = F.relu(f_n + f_l).mean(-1)  # GAP over time
    w = torch.sigmoid(gap @ mod.fc.weight.T + mod.fc.bias)[:, :, None]
    torch.testing.assert_close(mod(p, mask, other), p + f_n * w)
    assert mod(p, mask, None) is p  # missing neighbour level: term left out


def test_cross_level_attention_gap_ignores_padding():
    D, T = 4, 8
    mod = CrossLevelFusion(D, upsample(D), mode="attention")
    p = torch.randn(1, D, T)
    mask = _mask([5], T)
    p = p * mask[:, None]
    other = torch.randn(1, D, T // 2) * _mask([3], T // 2)[:, None]
    out = mod(p, mask, other)
    f_n = mod.resample(other) * mask[:, None]
    f_l = mod.conv(p, mask)[0]
    gap = F.relu(f_n + f_l)[..., :5].mean(-1)
    w = torch.sigmoid(mod.fc(gap))[:, :, None]
    torch.testing.assert_close(out[..., :5], (p + f_n * w)[..., :5])


def test_clff_is_eq9():
    dec = CLTDRDecoder(6, 3, head_dim=8, num_bins=2)
    p, finer, coarser = torch.randn(1, 6, 8), torch.randn(1, 6, 16), torch.randn(1, 6, 4)
    mask = torch.ones(1, 8, dtype=torch.bool)
    down = F.conv1d(
        finer, dec.clff.below.resample.weight, dec.clff.below.resample.bias, stride=2, padding=1, groups=6
    )  # depth-wise
    up = F.conv_transpose1d(
        coarser, dec.clff.above.resample.weight, dec.clff.above.resample.bias, stride=2, padding=1, output_padding=1
    )
    torch.testing.assert_close(dec.clff(p, mask, finer, coarser), down + p + up)
    torch.testing.assert_close(dec.clff(p, mask, None, coarser), p + up)
    torch.testing.assert_close(dec.clff(p, mask, finer, None), down + p)


def test_refined_score_is_eq10():
    a, r = torch.randn(50), torch.randn(50)
    expected = torch.sqrt(torch.sigmoid(a) * torch.sigmoid(r))
    torch.testing.assert_close(refined_log_prob(a, r).exp(), expected)
    # stable where the probabilities underflow
    assert torch.isfinite(refined_log_prob(torch.tensor([-200.0]), torch.tensor([-200.0]))).all()


def test_refined_boundaries_are_eqs_11_12():
    d = torch.rand(2, 5, 3, 2) * 4  # (B, T, K, 2)
    off = torch.randn(2, 5, 2)
    t = torch.arange(5.0)[None, :, None]
    start, end = t - d[..., 0], t + d[..., 1]
    r = refine_distances(d, off)
    torch.testing.assert_close(t - r[..., 0], start + off[:, :, None, 0])  # s' = s + R_so
    torch.testing.assert_close(t + r[..., 1], end + off[:, :, None, 1])  # e' = e + R_eo


def test_refined_boundaries_clamped_at_the_point():
    d = torch.rand(2, 5, 3, 2) * 4
    off = torch.randn(2, 5, 2) * 6
    r = refine_distances(d, off, clamp=True)
    torch.testing.assert_close(r, refine_distances(d, off).clamp(min=0))
    assert (r >= 0).all() and (refine_distances(d, off) < 0).any()


@pytest.mark.parametrize("offset_init,clamp", [("zero", True), ("default", False)])
def test_refinement_offsets_start_at_zero(offset_init, clamp):
    """offset_init 'zero': before training the refined boundaries are the coarse ones on every level;
    'default' moves them. clamp_refined reaches the detector's refined distances."""
    torch.manual_seed(3)
    model = build_detector(small_cfg(cltdr={"offset_init": offset_init, "clamp_refined": clamp}), 3).eval()
    x, mask = torch.randn(2, 12, 32), _mask([32, 20], 32)
    out = model(x * mask[:, None], mask)
    assert out.clamp_refined is clamp
    if offset_init == "zero":
        assert torch.equal(out.refine_offsets, torch.zeros_like(out.refine_offsets))
        torch.testing.assert_close(out.refined_distances, out.distances)
    else:
        assert out.refine_offsets[out.mask].abs().min() > 0
    # the zero-initialised tower still learns: its last conv gets a gradient
    model.train()
    loss = model.loss(x * mask[:, None], mask, [torch.tensor([[2.0, 9.0]])] * 2, [torch.tensor([1])] * 2)["loss"]
    loss.backward()
    tower = model.decoder.refine_head or model.decoder.refine_reg
    assert tower.out.weight.grad[-2:].abs().sum() > 0  # the offsets' channels


def test_trident_expectation_against_loop():
    B, K, T, nb = 2, 3, 7, 4
    center = torch.randn(B, 2, nb + 1, T)
    start, end = torch.randn(B, K, T), torch.randn(B, K, T)
    out = trident_distances(center, start, end, nb)
    ref = torch.zeros(B, T, K, 2)
    for b in range(B):
        for k in range(K):
            for t in range(T):
                # start: neighbours t-nb..t at distances nb..0; outside the sequence the logit is 0
                ls = [start[b, k, t - nb + j] if t - nb + j >= 0 else torch.tensor(0.0) for j in range(nb + 1)]
                ps = torch.softmax(torch.stack(ls) + center[b, 0, :, t], 0)
                ref[b, t, k, 0] = sum(ps[j] * (nb - j) for j in range(nb + 1))
                le = [end[b, k, t + j] if t + j < T else torch.tensor(0.0) for j in range(nb + 1)]
                pe = torch.softmax(torch.stack(le) + center[b, 1, :, t], 0)
                ref[b, t, k, 1] = sum(pe[j] * j for j in range(nb + 1))
    torch.testing.assert_close(out, ref)


# ------------------------------------------------------------------------------------------- whole model
def _assert_padding_invariant(model) -> tuple[torch.Tensor, torch.Tensor]:
    """Video 2 alone (padded to its own divisor multiple) and in a longer padded batch give the same outputs;
    returns the batch and its mask."""
    x = torch.randn(2, 12, 64)
    mask = _mask([64, 37], 64)
    x = x * mask[:, None]
    batch = model.predict(x, mask)[1]
    alone = model.predict(x[1:, :, :40], mask[1:, :40])[0]
    for a, b in zip(alone[0] + alone[1], batch[0] + batch[1]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    return x, mask


def test_padding_invariance_of_the_detector():
    """The same video alone (padded to its own divisor multiple) and in a longer padded batch: same outputs."""
    cfg = small_cfg()
    model = build_detector(cfg, 5).eval()
    x, mask = _assert_padding_invariant(model)
    # the loss of a batch does not depend on the padding either
    model.train()
    segs, labels = [torch.tensor([[3.0, 20.0]])], [torch.tensor([2])]
    normalizer = model.loss_normalizer.clone()
    torch.manual_seed(1)
    l1 = model.loss(x[1:, :, :40], mask[1:, :40], segs, labels)
    model.loss_normalizer.copy_(normalizer)
    torch.manual_seed(1)
    l2 = model.loss(x[1:], mask[1:], segs, labels)
    torch.testing.assert_close(l1["cls_loss"], l2["cls_loss"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(l1["reg_loss"], l2["reg_loss"], atol=1e-5, rtol=1e-4)


def test_detector_trains_a_step_and_counts_parameters():
    model = build_detector(small_cfg(), 5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(2, 12, 64)
    mask = _mask([64, 50], 64)
    segs = [torch.tensor([[3.0, 20.0], [30.0, 60.0]]), torch.tensor([[10.0, 12.0]])]
    labels = [torch.tensor([0, 4]), torch.tensor([1])]
    losses = model.loss(x, mask, segs, labels)
    assert losses["num_pos"] > 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    opt.step()
    assert count_parameters(model) > 0
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad), "unused parameters"


def test_thumos_model_size():
    cfg = config_from_dict({"dataset": {"annotation_file": "a", "feat_dir": "f"}})
    n = count_parameters(build_detector(cfg, 20))
    assert 15e6 < n < 30e6  # paper: 17.6 M, released code: 21.9 M (see README)


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_thumos14_config_builds_the_paper_size():
    """Table 15: 17.6 M parameters in all; Table 8: 9.5 M in the GMG encoder (with the FFT global branch). The
    paper's text (a depth-wise RefineHead, the default) gives 1.57 M less than Table 15, full RefineHead convs
    0.4 M more: Table 15 lies between the two readings (README, Model sizes)."""
    from cltdr.config import load_config

    model = build_detector(load_config(CONFIGS / "thumos14_i3d.yaml"), 20)
    full = build_detector(load_config(CONFIGS / "thumos14_i3d.yaml", ["model.cltdr.refine_depthwise=false"]), 20)
    assert abs(count_parameters(full) - 17.6e6) <= 0.5e6, count_parameters(full)
    assert count_parameters(full) - count_parameters(model) == 2 * (512 * 512 * 3 - 512 * 3)
    assert abs(count_parameters(model.encoder) - 9.5e6) <= 0.3e6, count_parameters(model.encoder)
    dec = model.decoder
    # the depth-wise convs of the paper's implementation details, and the shared RefineHead tower
    for conv in (
        dec.dcm.above.conv,
        dec.drm.below.conv,
        dec.drm.below.resample,
        dec.clff.below.resample,
        dec.dcm.above.resample,
        dec.clff.above.resample,
        *dec.refine_head.convs,
    ):
        assert conv.groups == conv.in_channels == 512
    assert dec.refine_head is not None and dec.refine_cls is None and dec.refine_reg is None
    assert dec.refine_head.out.out_channels == 20 + 2


def test_shared_refine_tower_splits_into_the_two_refinements():
    """shared_refine: one tower's K + 2 output channels are R_co (started at the prior) and R_so, R_eo (zero)."""
    torch.manual_seed(0)
    model = build_detector(small_cfg(cltdr={"shared_refine": True}), 3).eval()
    head = model.decoder.refine_head
    assert torch.allclose(head.out.bias[:3], torch.full((3,), -math.log(99.0)))
    assert torch.equal(head.out.weight[3:], torch.zeros_like(head.out.weight[3:]))
    with torch.no_grad():
        head.out.weight.normal_()
    x, mask = torch.randn(1, 12, 32), _mask([32], 32)
    out = model(x, mask)
    feats, masks = model.encoder(x, mask)
    f_c = [
        model.decoder.clff(feats[l], masks[l], feats[l - 1] if l else None, feats[l + 1] if l < 3 else None)
        for l in range(4)
    ]
    direct = torch.cat([head(f, m) for f, m in zip(f_c, masks)], -1).transpose(1, 2)  # (1, P, K + 2)
    torch.testing.assert_close(out.refine_logits, direct[..., :3], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.refine_offsets, direct[..., 3:], atol=1e-5, rtol=1e-4)


def test_refine_depthwise_tower_is_per_channel_convs_then_a_full_prediction():
    """refine_depthwise (the default): the RefineHead tower's convs before the last are depth-wise (checked
    against a loop over channels, with LayerNorm + ReLU between), its last conv is full; with unequal widths the
    first conv is grouped by their gcd; every parameter of the tower gets a gradient (padding invariance: the
    layout options' test below)."""
    from cltdr.model.layers import ConvTower

    torch.manual_seed(0)
    model = build_detector(small_cfg(), 3)  # the default
    head = model.decoder.refine_head
    assert [c.groups for c in head.convs] == [16, 16] and head.out.groups == 1
    x, m = torch.randn(2, 16, 20), _mask([20, 13], 20)
    x = x * m[:, None]
    ref = x
    for conv, norm in zip(head.convs, head.norms):
        y = torch.stack([F.conv1d(ref[:, c : c + 1], conv.weight[c : c + 1], padding=1)[:, 0] for c in range(16)], 1)
        y = F.layer_norm(y.transpose(1, 2), (16,), norm.weight, norm.bias, norm.eps).transpose(1, 2)
        ref = F.relu(y) * m[:, None]
    ref = F.conv1d(ref, head.out.weight, head.out.bias, padding=1) * m[:, None]
    torch.testing.assert_close(head(x, m), ref, atol=1e-5, rtol=1e-4)
    assert [c.groups for c in ConvTower(12, 16, 3, depthwise=True).convs] == [4, 16]  # gcd(12, 16), then 16
    dense = build_detector(small_cfg(cltdr={"refine_depthwise": False}), 3)
    saved = count_parameters(dense) - count_parameters(model)
    assert saved == 2 * (16 * 16 * 3 - 16 * 3)  # two hidden convs of D x D x 3 become D x 3
    losses = model.loss(torch.randn(1, 12, 64), _mask([64], 64), [torch.tensor([[3.0, 20.0]])], [torch.tensor([1])])
    losses["loss"].backward()
    assert all(p.grad is not None for p in head.parameters())


def test_detached_boundary_branches_send_no_gradient_to_the_encoder():
    """detach_boundary: what the Trident start / end towers read carries no gradient; the centre tower's does."""
    torch.manual_seed(0)
    x, mask = torch.randn(1, 12, 32), _mask([32], 32)
    for detach in (False, True):
        model = build_detector(small_cfg(cltdr={"detach_boundary": detach}), 3)
        seen = {}
        for name in ("start_head", "end_head", "center_head"):
            getattr(model.decoder, name).register_forward_pre_hook(
                lambda mod, args, name=name: seen.update({name: args[0].requires_grad})
            )
        model(x, mask)
        assert seen == {"start_head": not detach, "end_head": not detach, "center_head": True}


@pytest.mark.parametrize(
    "key,value",
    [
        ("depthwise", False),
        ("depthwise_up", False),
        ("shared_refine", False),
        ("refine_depthwise", False),
        ("detach_boundary", True),
        ("score", "logit_product"),
        ("offsets", "grid"),
        ("clff_depthwise", False),
        ("fusion_kernel", 1),
        ("boundary_input", "level"),
        ("center_scale", True),
        ("offset_kernel", 7),
    ],
)
def test_layout_options_keep_outputs_padding_invariant(key, value):
    """Each layout switch away from its default (the defaults are covered above)."""
    torch.manual_seed(0)
    _assert_padding_invariant(build_detector(small_cfg(cltdr={key: value}), 3).eval())


@pytest.mark.parametrize("shared", [True, False])
def test_offset_kernel_predicts_the_offsets_with_a_conv_of_that_kernel(shared):
    """offset_kernel 7 (released code): R_so, R_eo come from a kernel-7 conv reading the RefineHead tower's
    features (beside R_co's conv when one tower predicts both); checked level by level against that conv run
    directly, with random offset weights; the gap between levels laid end to end keeps them apart."""
    torch.manual_seed(0)
    opts = {"offset_kernel": 7, "shared_refine": shared, "offsets": "grid", "offset_init": "default"}
    model = build_detector(small_cfg(cltdr=opts), 3).eval()
    dec = model.decoder
    head = dec.refine_head if shared else dec.refine_reg
    conv = head.side if shared else head.out
    assert conv.kernel_size == (7,) and conv.out_channels == 6 and dec.gap == 3
    assert (head.out.kernel_size, head.out.out_channels) == (((3,), 3) if shared else ((7,), 6))
    x, mask = torch.randn(2, 12, 64), _mask([64, 41], 64)
    x = x * mask[:, None]
    seen: dict = {}
    dec.clff.register_forward_hook(lambda mod, args, out: seen.setdefault("clff", []).append((out, args[1])))
    with torch.no_grad():
        out = model(x, mask)
        starts = [0, *itertools.accumulate(out.level_sizes)]
        for l, (f_c, m) in enumerate(seen["clff"]):
            h = head.hidden(f_c * m[:, None], m)
            ref = F.conv1d(h, conv.weight, conv.bias, padding=3) * m[:, None]  # (B, 2K, T_l)
            got = out.refine_offsets[:, starts[l] : starts[l + 1]][:, : m.shape[1]]
            ref = torch.stack(ref.split(3, dim=1), -1)  # (B, K, T_l, 2)
            torch.testing.assert_close(got, ref.transpose(1, 2), atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="offset_kernel is set but model.cltdr.refine is .cls."):
        small_cfg(cltdr={"offset_kernel": 7, "refine": "cls"})


def test_channel_layer_norm_is_layer_norm_over_channels():
    """ChannelLayerNorm normalises along C in place (no transposed copies); the reference is F.layer_norm on the
    (B, T, C) view."""
    from cltdr.model.layers import ChannelLayerNorm

    torch.manual_seed(0)
    norm = ChannelLayerNorm(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 9) * 3 + 1
    ref = F.layer_norm(x.transpose(1, 2), (6,), norm.weight, norm.bias, norm.eps).transpose(1, 2)
    torch.testing.assert_close(norm(x), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(norm(x.bfloat16()), ref, atol=3e-2, rtol=3e-2)  # bf16 input, fp32 statistics


# ------------------------------------------------------------------------- the released forms of the decoder
def test_released_decoder_forms_do_what_they_say():
    """score 'logit_product': sigmoid(z_a * z_co) with R_co from logit 0; offsets 'grid': class-wise offsets in
    grid steps, zero at the start; clff_depthwise / fusion_kernel: the convs' layout; center_scale:
    ReLU(s_l * z) before the Trident expectation; boundary_input 'level': the start / end towers read P^l."""
    torch.manual_seed(0)
    K = 3
    released = {
        "score": "logit_product",
        "offsets": "grid",
        "clff_depthwise": False,
        "fusion_kernel": 1,
        "boundary_input": "level",
        "center_scale": True,
    }
    model = build_detector(small_cfg(cltdr=released), K).eval()
    dec = model.decoder
    assert dec.clff.below.resample.groups == 1 and dec.dcm.above.conv.kernel_size == (1,)
    assert dec.refine_head.out.out_channels == 3 * K  # R_co, then R_so and R_eo per class
    assert not dec.refine_head.out.bias[:K].any()  # R_co's logit starts at 0
    with torch.no_grad():
        for l, s in enumerate(dec.center_scales):
            s.fill_(-1.0 if l == 0 else 0.5 + l)
    x, mask = torch.randn(2, 12, 32), _mask([32, 20], 32)
    x = x * mask[:, None]
    seen: dict = {}
    dec.start_head.register_forward_pre_hook(lambda mod, args: seen.update(start_in=args[0]))
    for name in ("center_head", "start_head", "end_head"):
        getattr(dec, name).register_forward_hook(lambda mod, args, out, name=name: seen.update({name: out}))
    feats, masks = model.encoder(x, mask)
    out = model(x, mask)
    assert out.refine_offsets.shape == (2, out.mask.shape[1], K, 2)
    assert not out.refine_offsets.any()
    torch.testing.assert_close(out.refined_distances, out.distances)
    torch.testing.assert_close(out.refined_log_prob, F.logsigmoid(out.cls_logits * out.refine_logits))
    # the towers run over all levels laid end to end, level 0 first: its input is P^0 itself
    T0 = feats[0].shape[-1]
    torch.testing.assert_close(seen["start_in"][..., :T0], feats[0])
    # level 0's centre logits under the scale -1: ReLU(-z), then the Trident expectation
    center = F.relu(-seen["center_head"][..., :T0]).view(2, 2, dec.num_bins + 1, T0)
    expected = trident_distances(center, seen["start_head"][..., :T0], seen["end_head"][..., :T0], dec.num_bins)
    torch.testing.assert_close(out.distances[:, :T0], expected)
    # pushing offsets through: the grid refinement moves each class's boundaries by its own offsets
    d = out.distances[:, :T0]
    off = torch.randn_like(d)
    p, st = out.points.position[:T0][None, :, None], out.points.stride[:T0][None, :, None]
    refined = refine_distances(d, off, position=p, stride=st)
    torch.testing.assert_close(p - refined[..., 0] * st, p - d[..., 0] * st + off[..., 0])
