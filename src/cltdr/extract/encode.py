"""Writing videos with PyAV: the demo's and the tests' synthetic videos.

Dimension letters: F frames, H x W a frame (RGB, uint8).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from cltdr.extract.decode import import_av

# codec -> the pixel format it stores (ffv1 in .mkv: lossless RGB, for tests that read pixel values back)
PIXEL_FORMATS = {"ffv1": "bgr0", "mpeg4": "yuv420p", "libx264": "yuv420p", "h264": "yuv420p", "mjpeg": "yuvj420p"}


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    *,
    codec: str = "mpeg4",
    times: Sequence[float] | None = None,
    bit_rate: int | None = None,
) -> Path:
    """Encode ``frames`` (F, H, W, 3) uint8 at ``fps``; ``times``: each frame's timestamp in seconds instead
    (a variable frame rate, in milliseconds). Even H and W for the yuv420p codecs."""
    av = import_av()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = PIXEL_FORMATS.get(codec, "yuv420p")
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        time_base = Fraction(1, 1000) if times is not None else None
        if time_base is not None:  # the codec's clock too, or it rounds timestamps to 1 / fps
            stream.time_base = stream.codec_context.time_base = time_base
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
