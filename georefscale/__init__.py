"""georefscale: reference-based invertible rescaling of georeferenced satellite imagery.

Importing the package is cheap: torch is only imported by :mod:`georefscale.engine`.
"""

__version__ = "0.1.0"
