"""Evaluation: the sample sites (:mod:`.sites`), scores through the full file pipeline
(:mod:`.scores`) and rate-distortion against direct coding (:mod:`.ratedistortion`).

The names of the first releases' ``georefscale.evaluation`` module are re-exported here, imported
on first use.
"""

from __future__ import annotations

from georefscale.lazy import lazy_exports

_LAZY = {name: "georefscale.evaluation.scores"
         for name in ("CONVENTION", "default_methods", "evaluate", "lr_psnr", "score_files")}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports("georefscale.evaluation", _LAZY, globals())
