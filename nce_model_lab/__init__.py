"""The NCE's modelling lab: sample requests, training, evaluation, signed ONNX releases."""

from .errors import LabError

__all__ = ["LabError"]
