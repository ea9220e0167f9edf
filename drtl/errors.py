"""One exception family for the whole library.

Every message is a single actionable line: it names the offending file or parameter and says what
to do. The CLI prints ``drtl: error: <message>`` and exits non-zero.
"""


class DRTLError(Exception):
    """Base class of every error the library raises on purpose."""


class DataError(DRTLError):
    """Bad or missing input data (unreadable image, wrong size, empty folder, ...)."""


class ConfigError(DRTLError):
    """Bad parameters or configuration (unknown task, bad scale, ...)."""


class ModelError(DRTLError):
    """A model file that does not fit the command (wrong scale or arch, unreadable)."""


class ValidationError(DataError):
    """A dataset that fails its great-expectations suite."""
