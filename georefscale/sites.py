"""Deprecated: moved to :mod:`georefscale.evaluation.sites` (this alias warns on import)."""

import warnings

from georefscale.evaluation.sites import *  # noqa: F403
from georefscale.evaluation.sites import __all__  # noqa: F401

warnings.warn("georefscale.sites moved to georefscale.evaluation.sites", DeprecationWarning,
              stacklevel=2)
