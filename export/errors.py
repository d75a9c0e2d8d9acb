"""Errors of the export package that several modules raise (kept apart so that none imports another for them)."""


class DataError(ValueError):
    """Data that is missing or not what its format promises."""
