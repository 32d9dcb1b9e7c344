"""The one exception family advcli raises for bad input, so callers and the CLI can tell it apart."""


class AdvcliError(Exception):
    """A problem the user can fix: bad option, missing or malformed file, broken checkpoint."""


class DataError(AdvcliError):
    """A dataset could not be found or read, or its contents are malformed."""


class CheckpointError(AdvcliError):
    """A run folder or checkpoint is missing, incomplete or corrupt."""


class AttackError(AdvcliError):
    """An attack was asked for with invalid parameters, or produced an invalid result."""
