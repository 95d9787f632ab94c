"""A monotone scorecard: optimal binning, weight of evidence, logistic regression; with its
skl2onnx converter."""

from .binning import FeatureBins, WOEBinner
from .converter import ALLOWED_OPS, TARGET_OPSET, register_converters, scorecard_to_onnx
from .model import Scorecard

__all__ = [
    "ALLOWED_OPS",
    "TARGET_OPSET",
    "FeatureBins",
    "Scorecard",
    "WOEBinner",
    "register_converters",
    "scorecard_to_onnx",
]
