"""Helpers of the automatic mask generator; same semantics as segment_anything.utils.amg, with the
heavy lifting (RLE, COCO strings, boxes, stability, connected components) in samfast's native ops
(`samfast.ops`). Needs neither torchvision, pycocotools nor cv2.

An uncompressed RLE is {"size": [h, w], "counts": [...]}: run lengths over the column-major
flattened mask, starting with a run of zeros (possibly empty).
"""
from __future__ import annotations

import math
from copy import deepcopy
from itertools import chain, product
from typing import Any, Dict, Generator, ItemsView, List, Sequence, Tuple

import numpy as np
import torch

from .. import ops


class MaskData:
    """Columns (lists, numpy arrays, tensors) of per-mask data with joint filtering and concatenation."""

    def __init__(self, **kwargs) -> None:
        for k, v in kwargs.items():
            self._check(k, v)
        self._stats = dict(**kwargs)

    @staticmethod
    def _check(key: str, item: Any) -> None:
        if not isinstance(item, (list, np.ndarray, torch.Tensor)):
            raise TypeError(f"MaskData[{key!r}]: only lists, numpy arrays and tensors, got {type(item).__name__}")

    def __setitem__(self, key: str, item: Any) -> None:
        self._check(key, item)
        self._stats[key] = item

    def __delitem__(self, key: str) -> None:
        del self._stats[key]

    def __getitem__(self, key: str) -> Any:
        return self._stats[key]

    def __contains__(self, key: str) -> bool:
        return key in self._stats

    def items(self) -> ItemsView[str, Any]:
        return self._stats.items()

    def filter(self, keep: torch.Tensor) -> None:
        """keep: bool mask [N] or int64 indices (order kept)."""
        keep = torch.as_tensor(keep)
        keep_np = keep.detach().cpu().numpy()
        for k, v in self._stats.items():
            if v is None:
                continue
            if isinstance(v, torch.Tensor):
                self._stats[k] = v[keep.to(v.device)]
            elif isinstance(v, np.ndarray):
                self._stats[k] = v[keep_np]
            elif keep.dtype == torch.bool:
                self._stats[k] = [a for a, m in zip(v, keep_np.tolist()) if m]
            else:
                self._stats[k] = [v[i] for i in keep_np.tolist()]

    def cat(self, new_stats: "MaskData") -> None:
        """Appends new_stats' columns (shallow: new_stats must not be modified afterwards)."""
        for k, v in new_stats.items():
            if k not in self._stats or self._stats[k] is None:
                self._stats[k] = list(v) if isinstance(v, list) else v
            elif isinstance(v, torch.Tensor):
                self._stats[k] = torch.cat([self._stats[k], v], dim=0)
            elif isinstance(v, np.ndarray):
                self._stats[k] = np.concatenate([self._stats[k], v], axis=0)
            else:
                self._stats[k] = self._stats[k] + list(v)

    def to_numpy(self) -> None:
        for k, v in self._stats.items():
            if isinstance(v, torch.Tensor):
                self._stats[k] = v.detach().cpu().numpy()


# ------------------------------------------------------------------------------- grids and crops


def build_point_grid(n_per_side: int) -> np.ndarray:
    """[n*n, 2] (x, y) points evenly spaced in [0, 1]^2, cell centres."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> List[np.ndarray]:
    """One grid per crop layer i (0..n_layers), with int(n_per_side / scale_per_layer**i) points a side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: Tuple[int, ...], n_layers: int, overlap_ratio: float
) -> Tuple[List[List[int]], List[int]]:
    """Crop boxes (XYXY ints) and their layer indices: the full image, then (2**i)**2 crops for layer i."""
    im_h, im_w = im_size
    short_side = min(im_h, im_w)
    crop_boxes, layer_idxs = [[0, 0, im_w, im_h]], [0]

    def crop_len(orig_len: int, n_crops: int, overlap: int) -> int:
        return int(math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops))

    for i_layer in range(n_layers):
        n = 2 ** (i_layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n))
        crop_w, crop_h = crop_len(im_w, n, overlap), crop_len(im_h, n, overlap)
        x0s = [int((crop_w - overlap) * i) for i in range(n)]
        y0s = [int((crop_h - overlap) * i) for i in range(n)]
        for x0, y0 in product(x0s, y0s):
            crop_boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layer_idxs.append(i_layer + 1)
    return crop_boxes, layer_idxs


def batch_iterator(batch_size: int, *args) -> Generator[List[Any], None, None]:
    """Yields [a[i:i+batch_size] for a in args] over equally long sequences."""
    if not args or any(len(a) != len(args[0]) for a in args):
        raise ValueError("batch_iterator: needs inputs, all of the same length")
    n = len(args[0])
    for b in range((n + batch_size - 1) // batch_size):
        yield [a[b * batch_size: (b + 1) * batch_size] for a in args]


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    x0, y0 = crop_box[:2]
    offset = torch.tensor([[x0, y0, x0, y0]], device=boxes.device)
    return boxes + (offset.unsqueeze(1) if boxes.dim() == 3 else offset)


def uncrop_points(points: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    x0, y0 = crop_box[:2]
    offset = torch.tensor([[x0, y0]], device=points.device)
    return points + (offset.unsqueeze(1) if points.dim() == 3 else offset)


def uncrop_masks(masks: torch.Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int) -> torch.Tensor:
    """[..., h, w] crop masks -> [..., orig_h, orig_w] (zero padded)."""
    x0, y0, x1, y1 = crop_box
    if x0 == 0 and y0 == 0 and x1 == orig_w and y1 == orig_h:
        return masks
    pad_x, pad_y = orig_w - (x1 - x0), orig_h - (y1 - y0)
    return torch.nn.functional.pad(masks, (x0, pad_x - x0, y0, pad_y - y0), value=0)


def is_box_near_crop_edge(
    boxes: torch.Tensor, crop_box: Sequence[int], orig_box: Sequence[int], atol: float = 20.0
) -> torch.Tensor:
    """[N] bool: box [N, 4] (crop frame) touches a crop edge (within atol) that is not an image edge."""
    crop_t = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    orig_t = torch.as_tensor(orig_box, dtype=torch.float, device=boxes.device)
    boxes = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop = torch.isclose(boxes, crop_t[None, :], atol=atol, rtol=0)
    near_image = torch.isclose(boxes, orig_t[None, :], atol=atol, rtol=0)
    return torch.any(near_crop & ~near_image, dim=1)


def box_xyxy_to_xywh(box_xyxy):
    box = deepcopy(box_xyxy)
    box[2] = box[2] - box[0]
    box[3] = box[3] - box[1]
    return box


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """[N, 4] XYXY -> [N] (torchvision.ops.box_area)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


# ----------------------------------------------------------------------------- mask statistics


def calculate_stability_score(masks: torch.Tensor, mask_threshold: float, threshold_offset: float) -> torch.Tensor:
    """[..., H, W] logits -> [...]: IoU of (masks > thr + offset) and (masks > thr - offset)."""
    return ops.stability_score(masks, mask_threshold, threshold_offset)


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """bool [..., H, W] -> int64 [..., 4] XYXY boxes; [0, 0, 0, 0] for empty masks."""
    return ops.mask_to_box(masks)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Kept indices (torchvision.ops.batched_nms semantics), score descending."""
    return ops.batched_nms(boxes, scores, idxs, iou_threshold)


# -------------------------------------------------------------------------------------------- RLE


def _split_rles(counts: torch.Tensor, offsets: torch.Tensor, h: int, w: int, as_list: bool = True
                ) -> List[Dict[str, Any]]:
    """Flat (counts [T], offsets [N + 1]) -> N RLE dicts; counts as lists (official format) or as int64
    numpy arrays (as_list=False: samfast's internal form, cheap to join again)."""
    if as_list:
        c, o = counts.cpu().tolist(), offsets.cpu().tolist()
        return [{"size": [h, w], "counts": c[o[i]: o[i + 1]]} for i in range(len(o) - 1)]
    c, o = counts.cpu().numpy(), offsets.cpu().tolist()
    return [{"size": [h, w], "counts": c[o[i]: o[i + 1]]} for i in range(len(o) - 1)]


def _join_rles(rles: Sequence[Dict[str, Any]]) -> Tuple[torch.Tensor, torch.Tensor]:
    """N RLE dicts (counts as lists or numpy arrays) -> (counts [T], offsets [N + 1]) int64."""
    if all(isinstance(r["counts"], np.ndarray) for r in rles):
        parts = [r["counts"].astype(np.int64, copy=False) for r in rles]
        flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        lens = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    else:
        lens = np.fromiter((len(r["counts"]) for r in rles), dtype=np.int64, count=len(rles))
        flat = np.fromiter(chain.from_iterable(r["counts"] for r in rles), dtype=np.int64, count=int(lens.sum()))
    offsets = np.zeros(len(rles) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    return torch.from_numpy(flat), torch.from_numpy(offsets)


def rle_counts_to_list(rle: Dict[str, Any]) -> Dict[str, Any]:
    """RLE with list counts (the official format) from one with numpy counts."""
    c = rle["counts"]
    return {"size": list(rle["size"]), "counts": c.tolist() if isinstance(c, np.ndarray) else list(c)}


def mask_to_rle(masks: torch.Tensor, as_list: bool = True) -> List[Dict[str, Any]]:
    """bool [N, H, W] -> N uncompressed RLEs (same as the official `mask_to_rle_pytorch`); with
    as_list=False the counts are int64 numpy arrays."""
    _, h, w = masks.shape
    counts, offsets = ops.rle_encode(masks)
    return _split_rles(counts, offsets, h, w, as_list)


mask_to_rle_pytorch = mask_to_rle


def rles_to_masks(rles: Sequence[Dict[str, Any]]) -> torch.Tensor:
    """Uncompressed RLEs of one size -> bool [N, H, W] (CPU)."""
    if not rles:
        raise ValueError("rles_to_masks: needs at least one RLE")
    h, w = rles[0]["size"]
    if any(list(r["size"]) != [h, w] for r in rles):
        raise ValueError("rles_to_masks: all RLEs must have the same size")
    counts, offsets = _join_rles(rles)
    return ops.rle_decode(counts, offsets, h, w)


def rle_to_mask(rle: Dict[str, Any]) -> np.ndarray:
    """Uncompressed RLE -> HxW bool numpy array (C order)."""
    return rles_to_masks([rle])[0].numpy()


def area_from_rle(rle: Dict[str, Any]) -> int:
    c = rle["counts"]
    return int(c[1::2].sum()) if isinstance(c, np.ndarray) else int(sum(c[1::2]))


def coco_encode_rles(rles: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Uncompressed RLEs -> COCO compressed RLEs {"size": [h, w], "counts": str} (pycocotools format)."""
    if not rles:
        return []
    counts, offsets = _join_rles(rles)
    strings = ops.coco_rle_strings(counts, offsets)
    return [{"size": list(r["size"]), "counts": s} for r, s in zip(rles, strings)]


def coco_encode_rle(uncompressed_rle: Dict[str, Any]) -> Dict[str, Any]:
    return coco_encode_rles([uncompressed_rle])[0]


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> Tuple[np.ndarray, bool]:
    """HxW bool: fill holes / drop islands smaller than area_thresh (8-connected). -> (mask, changed)."""
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    out, changed = ops.remove_small_regions(torch.as_tensor(np.asarray(mask, dtype=bool))[None], area_thresh, mode)
    return out[0].numpy(), bool(changed[0])
