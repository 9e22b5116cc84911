"""samfast: Segment Anything with C++/CUDA kernels. Drop-in for `segment_anything`:

    import samfast as segment_anything  # or: from samfast import sam_model_registry, SamPredictor

Attributes load lazily (PEP 562), so `from samfast.onnx import OnnxPredictor` works in a
deployment without torch: only the names below that need torch import it.
"""
import importlib

__version__ = "0.1.0"

_LAZY = {
    # name: (module, attribute or None for the module itself)
    "_C": ("._C", None),
    "ops": (".ops", None),
    "load": (".api", "load"),
    "CheckpointError": (".build_sam", "CheckpointError"),
    "SamConfig": (".build_sam", "SamConfig"),
    "build_sam": (".build_sam", "build_sam"),
    "build_sam_from_config": (".build_sam", "build_sam_from_config"),
    "build_sam_vit_b": (".build_sam", "build_sam_vit_b"),
    "build_sam_vit_h": (".build_sam", "build_sam_vit_h"),
    "build_sam_vit_l": (".build_sam", "build_sam_vit_l"),
    "infer_config": (".build_sam", "infer_config"),
    "load_state_dict": (".build_sam", "load_state_dict"),
    "sam_model_registry": (".build_sam", "sam_model_registry"),
    "get_backend": (".ops", "get_backend"),
    "set_backend": (".ops", "set_backend"),
    "get_num_threads": (".ops", "get_num_threads"),
    "set_num_threads": (".ops", "set_num_threads"),
    "SamPredictor": (".predictor", "SamPredictor"),
    "SamAutomaticMaskGenerator": (".automatic_mask_generator", "SamAutomaticMaskGenerator"),
    "export_onnx": (".onnx", "export_onnx"),
    "Session": (".session", "Session"),
    "Detection": (".session", "Detection"),
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'samfast' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(module, __name__)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
