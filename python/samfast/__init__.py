"""samfast: Segment Anything with C++/CUDA kernels. Drop-in for `segment_anything`."""
from . import _C  # noqa: F401  (compiled kernels; see samfast.ops)

__version__ = "0.1.0"
