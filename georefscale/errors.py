"""Exceptions raised by georefscale; every message names the file (or value) and the problem."""

from __future__ import annotations


class GeoRefScaleError(Exception):
    """Base class of all georefscale errors (the CLI prints them as one line, exit code 1)."""


class InputError(GeoRefScaleError, ValueError):
    """An input file, value or option is unusable (not a raster, no CRS, wrong bands, ...)."""


class ReferenceMismatchError(GeoRefScaleError):
    """The reference given to the ground side is not the one the LR product was made with."""


class NoCandidateError(GeoRefScaleError):
    """A catalog query found no usable reference (CLI exit code 3)."""
