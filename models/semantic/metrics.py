"""The confusion matrix and its figures live in the task library (numpy, no torch):
``segstream.pipelines.tasks.metrics``. Re-exported here for the training and evaluation code."""

from segstream.pipelines.tasks.metrics import ConfusionMatrix

__all__ = ["ConfusionMatrix"]
