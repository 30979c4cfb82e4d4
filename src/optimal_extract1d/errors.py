"""Exception types raised by optimal_extract1d.

Every error the package raises on purpose derives from `OptimalExtractError`,
so a script can catch the package's own failures in one ``except`` clause.
Errors about bad user input also derive from `ValueError` or `TypeError`.
"""

__all__ = [
    "OptimalExtractError",
    "InputError",
    "ParameterError",
    "ProfileFitError",
    "ReferenceFileError",
]


class OptimalExtractError(Exception):
    """Base class of all errors raised by optimal_extract1d."""


class InputError(OptimalExtractError, ValueError):
    """The input file or model cannot be extracted (not spectral, no WCS, unreadable...)."""


class ParameterError(OptimalExtractError, ValueError):
    """A parameter value is invalid for the step or for the input slits."""


class ProfileFitError(OptimalExtractError):
    """The kernel could not be fitted to the data of a slit."""


class ReferenceFileError(OptimalExtractError):
    """A reference file (mode defaults, PSF) is missing or malformed."""
