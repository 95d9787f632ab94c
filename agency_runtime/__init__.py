"""The state body's runtime: verify, gate and score inside the protected perimeter.

Light by design: numpy, pyarrow, onnx, onnxruntime, pynacl and typer only.
"""

from .errors import RuntimeInputError, RuntimeRefused

__all__ = ["RuntimeInputError", "RuntimeRefused"]
