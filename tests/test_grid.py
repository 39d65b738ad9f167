"""The seconds <-> feature-grid conversion against a frame-by-frame reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cltdr.data.grid import FeatureGrid


def slow_center_seconds(t: int, fps: float, stride: float, num_frames: float) -> float:
    """Feature t covers frames [t*stride, t*stride + num_frames): the mean time of its frame interval."""
    first = t * stride
    last = first + num_frames  # exclusive end
    return 0.5 * (first + last) / fps


@pytest.mark.parametrize("fps,stride,frames", [(30.0, 4, 16), (25.0, 16, 32), (29.97, 8, 16), (15.0, 1, 1)])
def test_feature_centres_and_round_trip(fps, stride, frames):
    grid = FeatureGrid(fps=fps, feat_stride=stride, num_frames=frames)
    for t in range(0, 500, 7):
        s = slow_center_seconds(t, fps, stride, frames)
        assert grid.to_seconds(float(t)) == pytest.approx(s, abs=1e-9)
        assert grid.to_grid(s) == pytest.approx(t, abs=1e-9)
    x = np.random.default_rng(0).uniform(-5, 500, 100)
    np.testing.assert_allclose(grid.to_grid(grid.to_seconds(x)), x, atol=1e-9)


def test_thumos_hand_values_and_clipping():
    grid = FeatureGrid(fps=30.0, feat_stride=4, num_frames=16)
    assert grid.to_grid(10.0) == pytest.approx((300 - 8) / 4)  # 73.0
    assert grid.to_seconds(73.0) == pytest.approx(10.0)
    assert grid.to_seconds(-10.0, duration=20.0) == 0.0  # clipped to the video
    assert grid.to_seconds(1e6, duration=20.0) == 20.0
    t = grid.to_seconds(torch.tensor([-10.0, 73.0, 1e6]), duration=20.0)
    assert isinstance(t, torch.Tensor) and t.tolist() == pytest.approx([0.0, 10.0, 20.0])
