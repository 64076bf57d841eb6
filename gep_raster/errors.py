"""Exception tree of gep_raster.

Every message names the file (or config key), the band or column, what is wrong and,
where possible, how to fix it. The CLI prints these messages without a traceback.
"""
from __future__ import annotations


class GepError(Exception):
    """Base class of every error gep_raster raises on purpose."""


class ConfigError(GepError):
    """A run configuration key is missing, has the wrong type, or an invalid value."""


class InputError(GepError):
    """An input file cannot be opened or its content is unusable."""


class RasterError(InputError):
    """A raster input is unusable (cannot open, bad band, undefined nodata, implausible values)."""


class VectorError(InputError):
    """A polygon layer is unusable (cannot open, missing id/name field, no overlap)."""


class TableError(InputError):
    """A parameter table (legend, prices) is unusable (missing column, bad value, uncovered class)."""


class CRSError(InputError):
    """A CRS is missing or cannot be handled."""


class GridMismatchError(InputError):
    """Two grids that must be equal (within tolerance) differ."""


class ValidationFailed(GepError):
    """Pre-flight validation found one or more problems; ``problems`` lists them all."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) found:\n{lines}")
