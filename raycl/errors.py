"""The errors raycl raises for bad input: each names the field, file or value at fault."""


class RayclError(Exception):
    """Base class: the CLI prints these as one line and exits 2, without a traceback. ``details``:
    where the full story is (the console log of a run that failed in its workers), when there is one."""

    details: str | None = None


class ConfigError(RayclError, ValueError):
    """A config field is missing, unknown, of the wrong type or out of range."""


class DataError(RayclError):
    """A dataset, shard or row cannot be read."""


class CheckpointError(RayclError):
    """A checkpoint cannot be restored into this run (other model, method or layout)."""


class BankError(RayclError, ValueError):
    """A memory bank or k-means was built or called with an invalid size, dimension or shape."""


class BankIndexError(RayclError, IndexError):
    """A sample index outside the memory bank."""
