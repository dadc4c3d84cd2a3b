"""`uva.train`: the training entry point, `train(TrainArgs(...))` (what `uva train` runs). The
parts live in the `uva.training` package (see its docstring for the module map)."""
from .training import HEAD_STAGE, STAGES, TrainArgs, train

__all__ = ["HEAD_STAGE", "STAGES", "TrainArgs", "train"]
