"""SamPredictor: embed an image once, then predict masks for many prompts (drop-in API)."""
from typing import Optional, Tuple

import numpy as np
import torch

from . import ops
from .memory import maybe_tune_for
from .fast_decoder import FastMaskDecoder
from .modeling import Sam
from .utils.transforms import ResizeLongestSide


def _as_array(x, name: str, dtype=np.float64) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected a numeric array, got {type(x).__name__}") from e
    if dtype != np.int64 and not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


class SamPredictor:
    """Same interface as segment_anything.SamPredictor."""

    def __init__(self, sam_model: Sam, cuda_graphs: bool = False) -> None:
        """cuda_graphs: on a CUDA model, run prompt encoding + decoder + post-processing of
        mask-free prompts as one captured CUDA graph per prompt shape (see cuda_graph_decoder)."""
        if not isinstance(sam_model, Sam):
            raise TypeError(f"sam_model: expected a samfast Sam model, got {type(sam_model).__name__}")
        self.model = sam_model
        self.transform = ResizeLongestSide(sam_model.image_encoder.img_size)
        self._fast_decoder = FastMaskDecoder(sam_model)
        self.cuda_graphs = bool(cuda_graphs)
        self._graph_decoder = None
        maybe_tune_for(self.device)  # keep large freed CPU buffers for reuse (see samfast.memory)
        self.reset_image()

    # ------------------------------------------------------------------ image

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """image: HxWx3 uint8 array (RGB, or BGR as from OpenCV with image_format="BGR")."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        if not isinstance(image, np.ndarray):
            raise TypeError(f"image: expected a HxWx3 uint8 numpy array, got {type(image).__name__}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image: expected shape HxWx3 (uint8 {image_format}), got {image.shape}")
        if image.dtype != np.uint8:
            raise TypeError(f"image: expected dtype uint8 (values 0..255), got {image.dtype}")
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"image: empty image of shape {image.shape}")
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        input_image = self.transform.apply_image(image)
        input_torch = torch.as_tensor(input_image, device=self.device).permute(2, 0, 1).contiguous()[None]
        self.set_torch_image(input_torch, image.shape[:2])

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: Tuple[int, ...]) -> None:
        """transformed_image: 1x3xHxW, longest side == img_size (see ResizeLongestSide)."""
        img_size = self.model.image_encoder.img_size
        if not isinstance(transformed_image, torch.Tensor):
            raise TypeError(f"transformed_image: expected a torch.Tensor, got {type(transformed_image).__name__}")
        if transformed_image.dim() != 4 or transformed_image.shape[1] != 3 or \
                max(transformed_image.shape[2:]) != img_size:
            raise ValueError(f"transformed_image: expected Bx3xHxW with long side {img_size}, "
                             f"got {tuple(transformed_image.shape)}")
        if len(original_image_size) != 2 or min(original_image_size) < 1:
            raise ValueError(f"original_image_size: expected (H, W), got {original_image_size}")
        self.reset_image()
        self.original_size = tuple(int(v) for v in original_image_size)
        self.input_size = tuple(transformed_image.shape[-2:])
        x = self.model.preprocess(transformed_image.to(self.device, torch.float32))
        enc_dtype = self.model.image_encoder.patch_embed.proj.weight.dtype
        self.features = self.model.image_encoder(x.to(enc_dtype))
        self.is_image_set = True

    def get_image_embedding(self) -> torch.Tensor:
        """1xCxhxw image embedding (C=256, h=w=64 for SAM)."""
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) to generate an embedding.")
        return self.features

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        self.is_image_set = False
        self.features = None
        self._decoder_cache = None
        self.original_size = None
        self.input_size = None
        self.orig_h = self.orig_w = self.input_h = self.input_w = None

    # ------------------------------------------------------------------ prompts

    def predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prompts in original-image pixels: point_coords Nx2 (x, y), point_labels N (1 fg, 0 bg),
        box 4 (XYXY), mask_input 1x256x256 logits. Returns (masks CxHxW, iou C, low_res Cx256x256)."""
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        if mask_input is None and ops.get_backend() == "kernels" and self.device.type == "cpu":
            # the mask-free CPU path in one C++ call; None where the prompts are not numpy arrays of the usual kinds
            pp = self._fast_decoder.prompt_predictor(self._kernel_cache(), self.model.image_encoder.img_size,
                                                     self.input_size, self.original_size, self.transform.target_length)
            out = None if pp is None else pp.predict(point_coords, point_labels, box, bool(multimask_output),
                                                     float(self.model.mask_threshold), not return_logits)
            if out is not None:
                return out
        coords_t = labels_t = box_t = mask_t = None
        dev = self.device
        if point_coords is not None or point_labels is not None:
            if point_coords is None or point_labels is None:
                raise ValueError("point_coords and point_labels must be given together")
            pc = _as_array(point_coords, "point_coords")
            pl = _as_array(point_labels, "point_labels")
            if pc.ndim != 2 or pc.shape[1] != 2:
                raise ValueError(f"point_coords: expected shape Nx2 (x, y), got {pc.shape}")
            if pl.shape != (pc.shape[0],):
                raise ValueError(f"point_labels: expected shape ({pc.shape[0]},) to match point_coords, got {pl.shape}")
            pc = self.transform.apply_coords(pc, self.original_size)
            coords_t = torch.as_tensor(pc, dtype=torch.float, device=dev)[None]
            labels_t = torch.as_tensor(pl, dtype=torch.int, device=dev)[None]
        if box is not None:
            b = _as_array(box, "box")
            if b.size != 4:
                raise ValueError(f"box: expected 4 values (x0, y0, x1, y1), got shape {b.shape}")
            b = self.transform.apply_boxes(b.reshape(1, 4), self.original_size)
            box_t = torch.as_tensor(b, dtype=torch.float, device=dev)
        if mask_input is not None:
            m = _as_array(mask_input, "mask_input", np.float32)
            mh, mw = self.model.prompt_encoder.mask_input_size
            if m.shape != (1, mh, mw):
                raise ValueError(f"mask_input: expected shape 1x{mh}x{mw} (low-res logits), got {m.shape}")
            mask_t = torch.as_tensor(m, dtype=torch.float, device=dev)[None]
        masks, iou, low_res = self.predict_torch(coords_t, labels_t, box_t, mask_t, multimask_output,
                                                 return_logits=return_logits)
        return masks[0].cpu().numpy(), iou[0].float().cpu().numpy(), low_res[0].float().cpu().numpy()

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prompts already in the resized frame: point_coords BxNx2, point_labels BxN,
        boxes Bx4, mask_input Bx1x256x256. Returns (masks BxCxHxW, iou BxC, low_res BxCx256x256)."""
        points = self._start_prediction(point_coords, point_labels, boxes, mask_input)
        model = self.model
        threshold = None if return_logits else model.mask_threshold
        fast = ops.get_backend() == "kernels"
        if fast and self.cuda_graphs and mask_input is None and self.device.type == "cuda":
            if self._graph_decoder is None:
                from .cuda_graph_decoder import CudaGraphDecoder

                self._graph_decoder = CudaGraphDecoder(self._fast_decoder)
            return self._graph_decoder(self._decoder_cache, point_coords, point_labels, boxes, multimask_output,
                                       self.input_size, self.original_size, threshold)
        low_res, iou = self._decode_low_res(points, boxes, mask_input, multimask_output)
        masks = ops.postprocess_masks(low_res, model.image_encoder.img_size, self.input_size, self.original_size,
                                      threshold)
        return masks, iou, low_res

    @torch.no_grad()
    def predict_low_res_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """predict_torch without the upsampling: (low_res logits BxCx256x256 float32, iou BxC float32).
        For callers that filter first and upsample only what survives (the mask generator)."""
        points = self._start_prediction(point_coords, point_labels, boxes, mask_input)
        return self._decode_low_res(points, boxes, mask_input, multimask_output)

    def _start_prediction(self, point_coords, point_labels, boxes, mask_input):
        """Checks shared by the predict_* entry points; builds the per-image decoder cache on first use.
        Returns the prompt encoder's `points` argument."""
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        self._check_torch_prompts(point_coords, point_labels, boxes, mask_input)
        if ops.get_backend() == "kernels":
            self._kernel_cache()
        return (point_coords, point_labels) if point_coords is not None else None

    def _kernel_cache(self):
        """The fast decoder's per-image cache, built on first use."""
        if self._decoder_cache is None:
            self._decoder_cache = self._fast_decoder.prepare(self.features)
        return self._decoder_cache

    def _decode_low_res(self, points, boxes, mask_input, multimask_output) -> Tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        dt = model.dtype
        if ops.get_backend() == "kernels" and mask_input is None:
            tokens = self._fast_decoder.prompt_tokens(points, boxes)  # one C++ call instead of the modules' ops
            if tokens is not None:
                low_res, iou = self._fast_decoder.decode_tokens(self._decoder_cache, tokens, None, multimask_output)
                return low_res.float(), iou.float()
        sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        if ops.get_backend() == "kernels":
            # per-image cache + folded projections + fused kernels (same math as the module path)
            low_res, iou = self._fast_decoder(self._decoder_cache, sparse,
                                              dense if mask_input is not None else None, multimask_output)
        else:
            low_res, iou = model.mask_decoder(
                image_embeddings=self.features.to(dt),
                image_pe=model.prompt_encoder.get_dense_pe().to(dt),
                sparse_prompt_embeddings=sparse.to(dt),
                dense_prompt_embeddings=dense.to(dt),
                multimask_output=multimask_output,
            )
        return low_res.float(), iou.float()

    def _check_torch_prompts(self, point_coords, point_labels, boxes, mask_input) -> None:
        batch = []
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        if point_coords is not None:
            if not isinstance(point_coords, torch.Tensor) or point_coords.dim() != 3 or point_coords.shape[-1] != 2:
                raise ValueError(f"point_coords: expected a BxNx2 tensor, got {_desc(point_coords)}")
            if not isinstance(point_labels, torch.Tensor) or tuple(point_labels.shape) != tuple(point_coords.shape[:2]):
                raise ValueError(f"point_labels: expected a tensor of shape {tuple(point_coords.shape[:2])} (BxN), "
                                 f"got {_desc(point_labels)}")
            batch.append(point_coords.shape[0])
        if boxes is not None:
            if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"boxes: expected a Bx4 tensor (XYXY), got {_desc(boxes)}")
            batch.append(boxes.shape[0])
        if mask_input is not None:
            mh, mw = self.model.prompt_encoder.mask_input_size
            if not isinstance(mask_input, torch.Tensor) or mask_input.dim() != 4 or \
                    tuple(mask_input.shape[1:]) != (1, mh, mw):
                raise ValueError(f"mask_input: expected a Bx1x{mh}x{mw} tensor, got {_desc(mask_input)}")
            batch.append(mask_input.shape[0])
        if len(set(batch)) > 1:
            raise ValueError(f"prompt batch sizes differ: {batch} (points, boxes, masks must share B)")


def _desc(x) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
