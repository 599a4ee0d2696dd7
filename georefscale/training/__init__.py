"""Training of RefScale and no-reference models on (target, reference) pairs of real rasters."""

from georefscale.training.trainer import TrainConfig, load_config, train

__all__ = ["TrainConfig", "load_config", "train"]
