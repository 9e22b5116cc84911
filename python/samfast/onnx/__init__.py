"""ONNX export and an onnxruntime predictor for samfast (`pip install samfast[onnx]`;
`onnxruntime-gpu` instead of `onnxruntime` for the CUDA / TensorRT execution providers).

    samfast.export_onnx(model, "decoder.onnx")                       # official decoder contract
    samfast.export_onnx(model, "encoder.onnx", part="encoder")
    from samfast.onnx import OnnxPredictor                           # numpy + onnxruntime only
    p = OnnxPredictor("encoder.onnx", "decoder.onnx"); p.set_image(img); p.predict(...)

Attributes load lazily: `samfast.onnx.predictor` imports neither torch nor onnx, and
`samfast.onnx.export` imports onnx only when it is called.
"""
from typing import Any

__all__ = ["export_onnx", "OnnxPredictor", "export_main"]

_WHERE = {"export_onnx": ".export", "SamOnnxDecoder": ".export", "SamOnnxEncoder": ".export",
          "OnnxPredictor": ".predictor", "export_main": ".cli"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
