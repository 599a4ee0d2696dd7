"""Deprecated: moved to :mod:`georefscale.evaluation.ratedistortion` (warns on import)."""

import warnings

from georefscale.evaluation.ratedistortion import *  # noqa: F403
from georefscale.evaluation.ratedistortion import __all__  # noqa: F401

warnings.warn("georefscale.ratedistortion moved to georefscale.evaluation.ratedistortion",
              DeprecationWarning, stacklevel=2)
