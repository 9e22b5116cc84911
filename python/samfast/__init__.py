"""samfast: Segment Anything with C++/CUDA kernels. Drop-in for `segment_anything`:

    import samfast as segment_anything  # or: from samfast import sam_model_registry, SamPredictor
"""
from . import _C  # noqa: F401  (compiled kernels; see samfast.ops)
from . import ops
from .api import load
from .build_sam import (
    CheckpointError,
    SamConfig,
    build_sam,
    build_sam_from_config,
    build_sam_vit_b,
    build_sam_vit_h,
    build_sam_vit_l,
    infer_config,
    load_state_dict,
    sam_model_registry,
)
from .ops import get_backend, set_backend
from .predictor import SamPredictor
from .automatic_mask_generator import SamAutomaticMaskGenerator
from .onnx import export_onnx  # noqa: F401  (lazy: needs the onnx package only when called)
from .session import Session, Detection

__version__ = "0.1.0"

__all__ = [
    "sam_model_registry", "SamPredictor", "build_sam", "build_sam_vit_h", "build_sam_vit_l", "build_sam_vit_b",
    "build_sam_from_config", "SamConfig", "CheckpointError", "infer_config", "load_state_dict", "load",
    "set_backend", "get_backend", "ops",
]
