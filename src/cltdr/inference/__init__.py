"""Inference: from per-level predictions of a video to ActivityNet-style detections."""

from cltdr.inference.postprocess import (
    Detections,
    PostprocessOptions,
    postprocess_video,
    select_candidates,
    to_results,
)

__all__ = ["Detections", "PostprocessOptions", "postprocess_video", "select_candidates", "to_results"]
