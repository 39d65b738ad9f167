"""cltdr: temporal action localization with CLTDR-GMG, in pure PyTorch.

The package follows the pipeline: ``data`` (formats, datasets, synthetic benchmark) -> ``model`` (encoder,
decoder heads, label assignment, losses) -> ``inference`` (decoding, Soft-NMS) -> ``evaluation`` (mAP),
with ``training`` and the ``cli`` around them. The Python API (``cltdr.api``) is re-exported here:
:class:`Localizer`, :class:`Detections`, :class:`Detection`; ``cltdr.deploy`` exports and runs a network file.
"""

__version__ = "0.3.0"  # the one statement of the version: pyproject.toml reads it (CHANGELOG.md says what changed)

from cltdr.api import Detection, Detections, Localizer  # noqa: E402  (after the version, which they do not need)

__all__ = ["Detection", "Detections", "Localizer", "__version__"]
