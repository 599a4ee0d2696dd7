"""Evaluation: the sample sites (:mod:`.sites`), scores through the full file pipeline
(:mod:`.evaluate`) and rate-distortion against direct coding (:mod:`.ratedistortion`).

The names of the first releases' ``georefscale.evaluation`` module are re-exported here.
"""

from georefscale.evaluation.evaluate import (
    CONVENTION,
    default_methods,
    evaluate,
    lr_psnr,
    score_files,
)

__all__ = ["CONVENTION", "default_methods", "evaluate", "lr_psnr", "score_files"]
