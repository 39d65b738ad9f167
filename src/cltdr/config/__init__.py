"""Typed configuration, loaded from YAML: the schema (schema.py, every field documented) and reading it
(load.py: YAML, ``--set`` overrides, errors that name the file and the key)."""

from cltdr.config.load import apply_overrides, config_from_dict, load_config, parse_override
from cltdr.config.schema import (
    PRESETS,
    CLTDROptions,
    Config,
    DatasetConfig,
    FusionConfig,
    GMGOptions,
    LossConfig,
    ModelConfig,
    PostprocessOptions,
    ReleasedOptions,
    SGPOptions,
    TestConfig,
    TrainConfig,
    TransformerOptions,
    invalid_tious,
    pyramid_divisor,
    unread_sections,
)

__all__ = [
    "CLTDROptions",
    "Config",
    "DatasetConfig",
    "FusionConfig",
    "GMGOptions",
    "LossConfig",
    "ModelConfig",
    "PRESETS",
    "PostprocessOptions",
    "ReleasedOptions",
    "SGPOptions",
    "TestConfig",
    "TrainConfig",
    "TransformerOptions",
    "apply_overrides",
    "config_from_dict",
    "invalid_tious",
    "load_config",
    "parse_override",
    "pyramid_divisor",
    "unread_sections",
]
