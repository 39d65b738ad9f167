"""User-facing errors.

Anything a user can cause (a bad file, a bad config key, a checkpoint from another run) raises a subclass of
:class:`CltdrError` whose message names the file, video or key and what was expected. The CLI prints the
message and exits non-zero without a traceback; programming errors stay ordinary exceptions.
"""


class CltdrError(Exception):
    """Base class of errors caused by user input; the message is meant to be read by a person."""


class ConfigError(CltdrError):
    """An unknown or mistyped config key, or an invalid value."""


class DataError(CltdrError):
    """A malformed annotation file, a missing or inconsistent feature file, a bad segment."""


class CheckpointError(CltdrError):
    """A checkpoint that is missing, corrupt, or was written for another model configuration."""
