"""samfast custom ops for automatic mask generation (re-exported by `samfast.ops`).

Batched NMS, stability score, mask -> box, RLE / COCO RLE encode/decode and small-region removal:
each a `torch.library.custom_op` over `samfast._C` (CPU; CUDA where noted) with a fake impl and a
pure-PyTorch `*_reference`. Split from ops.py only to keep files short; import from `samfast.ops`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _C
from .ops import (  # noqa: F401
    _check, _postprocess_sizes, _shape, cuda_stream, postprocess_masks_reference, tensor_ref, use_kernel,
)

# --------------------------------------------------------------------------------------------
# automatic mask generation: batched NMS, stability score, mask -> box, RLE / COCO RLE, small regions
# --------------------------------------------------------------------------------------------


def _amg_kernel(name: str, *tensors: Tensor) -> bool:
    return use_kernel(f"amg_{name}", *tensors)


def _as_dtype(value: float, dtype: torch.dtype) -> float:
    """A Python float rounded to `dtype`, as torch rounds it when comparing a `dtype` tensor with it."""
    return torch.tensor(value, dtype=dtype).item()


def batched_nms_reference(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """torchvision.ops.batched_nms: boxes [N, 4] XYXY, scores [N], idxs [N] categories -> kept indices
    (int64, score descending; ties in index order). A box suppresses later boxes of its category with
    IoU > iou_threshold."""
    order = torch.sort(scores, descending=True, stable=True)[1]
    b = boxes[order]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    wh = (torch.min(b[:, None, 2:], b[None, :, 2:]) - torch.max(b[:, None, :2], b[None, :, :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    iou = inter / (area[:, None] + area[None, :] - inter)
    cat = idxs[order]
    over = (iou > iou_threshold) & (cat[:, None] == cat[None, :])
    suppressed = torch.zeros(len(b), dtype=torch.bool, device=b.device)
    keep = []
    for i in range(len(b)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= over[i]
    return order[torch.as_tensor(keep, dtype=torch.long, device=b.device)]


@torch.library.custom_op("samfast::amg_nms", mutates_args=())
def _amg_nms_op(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> tuple[Tensor, Tensor]:
    keep = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)  # zeros: deterministic tail
    if boxes.is_cuda:
        count = torch.zeros(1, dtype=torch.int64, device=boxes.device)
        order = torch.sort(scores, descending=True, stable=True)[1]
        mask = torch.empty((len(boxes), (len(boxes) + 63) // 64), dtype=torch.int64, device=boxes.device)
        refs = [tensor_ref(t) for t in (boxes, order, idxs, mask, keep, count)]
        _C.amg_nms_cuda(*refs, iou_threshold, cuda_stream(boxes))
        return keep, count
    n = _C.amg_nms_cpu(tensor_ref(boxes), tensor_ref(scores), tensor_ref(idxs), tensor_ref(keep), iou_threshold)
    return keep, torch.tensor([n], dtype=torch.int64)


@_amg_nms_op.register_fake
def _(boxes, scores, idxs, iou_threshold):
    return boxes.new_empty((boxes.shape[0],), dtype=torch.int64), boxes.new_empty((1,), dtype=torch.int64)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Native `torchvision.ops.batched_nms` (same kept set); see `batched_nms_reference`."""
    _check(isinstance(boxes, Tensor) and boxes.dim() == 2 and boxes.shape[-1] == 4, ValueError,
           f"boxes: expected [N, 4] (XYXY), got {_shape(boxes)}")
    N = boxes.shape[0]
    _check(isinstance(scores, Tensor) and tuple(scores.shape) == (N,), ValueError,
           f"scores: expected [{N}], got {_shape(scores)}")
    _check(isinstance(idxs, Tensor) and tuple(idxs.shape) == (N,), ValueError,
           f"idxs: expected [{N}], got {_shape(idxs)}")
    _check(boxes.is_floating_point() and scores.is_floating_point(), TypeError,
           f"boxes / scores: expected float tensors, got {boxes.dtype} / {scores.dtype}")
    scores, idxs = scores.to(boxes.device), idxs.to(boxes.device, torch.int64)
    if N == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    if _amg_kernel("nms", boxes) and boxes.dtype in (torch.float32, torch.float64):
        st = scores.dtype if scores.dtype in (torch.float32, torch.float64) else torch.float32
        keep, count = _amg_nms_op(boxes.contiguous(), scores.to(st).contiguous(), idxs.contiguous(),
                                  float(iou_threshold))
        return keep[: int(count.item())]
    return batched_nms_reference(boxes, scores, idxs, iou_threshold)


def stability_score_reference(masks: Tensor, mask_threshold: float, threshold_offset: float) -> Tensor:
    """segment_anything's `calculate_stability_score`: masks [..., H, W] logits -> [...] float."""
    inter = (masks > (mask_threshold + threshold_offset)).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    union = (masks > (mask_threshold - threshold_offset)).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    return inter / union


@torch.library.custom_op("samfast::amg_stability_score", mutates_args=())
def _amg_stability_op(masks: Tensor, hi: float, lo: float) -> Tensor:
    out = torch.empty(masks.shape[0], dtype=torch.float32, device=masks.device)
    if masks.is_cuda:
        _C.amg_stability_score_cuda(tensor_ref(masks), tensor_ref(out), hi, lo, cuda_stream(masks))
    else:
        _C.amg_stability_score_cpu(tensor_ref(masks), tensor_ref(out), hi, lo)
    return out


@_amg_stability_op.register_fake
def _(masks, hi, lo):
    return masks.new_empty((masks.shape[0],), dtype=torch.float32)


def stability_score(masks: Tensor, mask_threshold: float, threshold_offset: float) -> Tensor:
    """IoU of masks > thr + offset and masks > thr - offset: [..., H, W] logits -> [...] float32."""
    _check(isinstance(masks, Tensor) and masks.dim() >= 2, ValueError,
           f"masks: expected [..., H, W] logits, got {_shape(masks)}")
    _check(masks.is_floating_point(), TypeError, f"masks: expected a float tensor, got {masks.dtype}")
    lead = masks.shape[:-2]
    if masks.dtype in (torch.float32, torch.bfloat16) and masks.numel() > 0 and _amg_kernel("stability_score", masks):
        # thresholds round to the logits' dtype first, as torch's tensor-vs-scalar comparison does
        hi = _as_dtype(mask_threshold + threshold_offset, masks.dtype)
        lo = _as_dtype(mask_threshold - threshold_offset, masks.dtype)
        flat = masks.reshape(-1, *masks.shape[-2:]).contiguous()
        return _amg_stability_op(flat, hi, lo).reshape(lead)
    return stability_score_reference(masks, mask_threshold, threshold_offset)


def mask_to_box_reference(masks: Tensor) -> Tensor:
    """segment_anything's `batched_mask_to_box`: bool [..., H, W] -> int64 [..., 4] XYXY, zeros if empty."""
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, device=masks.device)
    h, w = masks.shape[-2:]
    rows, cols = masks.any(-1), masks.any(-2)
    ar_h, ar_w = torch.arange(h, device=masks.device), torch.arange(w, device=masks.device)
    bottom = (rows * ar_h).amax(-1)
    top = (rows * ar_h + h * ~rows).amin(-1)
    right = (cols * ar_w).amax(-1)
    left = (cols * ar_w + w * ~cols).amin(-1)
    out = torch.stack([left, top, right, bottom], -1)
    empty = (right < left) | (bottom < top)
    return out * (~empty).unsqueeze(-1)


@torch.library.custom_op("samfast::amg_mask_to_box", mutates_args=())
def _amg_mask_to_box_op(masks: Tensor) -> Tensor:
    out = torch.empty((masks.shape[0], 4), dtype=torch.int64, device=masks.device)
    if masks.is_cuda:
        _C.amg_mask_to_box_cuda(tensor_ref(masks), tensor_ref(out), cuda_stream(masks))
    else:
        _C.amg_mask_to_box_cpu(tensor_ref(masks), tensor_ref(out))
    return out


@_amg_mask_to_box_op.register_fake
def _(masks):
    return masks.new_empty((masks.shape[0], 4), dtype=torch.int64)


def mask_to_box(masks: Tensor) -> Tensor:
    """XYXY boxes (inclusive max) of bool masks [..., H, W] -> int64 [..., 4]; [0, 0, 0, 0] when empty."""
    _check(isinstance(masks, Tensor) and masks.dim() >= 2, ValueError,
           f"masks: expected bool [..., H, W], got {_shape(masks)}")
    if masks.dtype != torch.bool:
        masks = masks != 0
    if masks.numel() == 0 or not _amg_kernel("mask_to_box", masks):
        return mask_to_box_reference(masks)
    flat = masks.reshape(-1, *masks.shape[-2:]).contiguous()
    return _amg_mask_to_box_op(flat).reshape(*masks.shape[:-2], 4)


def postprocess_masks_stats_reference(
    masks: Tensor, img_size: int, input_size: Sequence[int], original_size: Sequence[int],
    mask_threshold: float, stability_offset: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """What the official generator does per batch, unfused: low-res logits [N, h, w] -> postprocess_masks
    (float [N, H0, W0]) -> (masks > mask_threshold [N, H0, W0] bool, stability score [N] float32,
    boxes [N, 4] int64 XYXY of the bool masks)."""
    x = postprocess_masks_reference(masks[:, None], img_size, input_size, original_size)[:, 0]
    stab = stability_score_reference(x, mask_threshold, stability_offset).float()
    b = x > mask_threshold
    return b, stab, mask_to_box_reference(b).to(torch.int64)


@torch.library.custom_op("samfast::postprocess_masks_stats", mutates_args=())
def _postprocess_stats_op(masks: Tensor, img_size: int, input_h: int, input_w: int, out_h: int, out_w: int,
                          threshold: float, stab_hi: float, stab_lo: float) -> tuple[Tensor, Tensor, Tensor]:
    N = masks.shape[0]
    out = masks.new_empty((N, out_h, out_w), dtype=torch.bool)
    stab = masks.new_empty((N,), dtype=torch.float32)
    boxes = masks.new_empty((N, 4), dtype=torch.int64)
    refs = [tensor_ref(t) for t in (masks, out, stab, boxes)]
    if masks.is_cuda:
        scratch = masks.new_empty((N, 6), dtype=torch.int32)
        _C.postprocess_masks_stats_cuda(*refs, tensor_ref(scratch), img_size, input_h, input_w, threshold,
                                        stab_hi, stab_lo, cuda_stream(masks))
    else:
        _C.postprocess_masks_stats_cpu(*refs, img_size, input_h, input_w, threshold, stab_hi, stab_lo)
    return out, stab, boxes


@_postprocess_stats_op.register_fake
def _(masks, img_size, input_h, input_w, out_h, out_w, threshold, stab_hi, stab_lo):
    N = masks.shape[0]
    return (masks.new_empty((N, out_h, out_w), dtype=torch.bool), masks.new_empty((N,), dtype=torch.float32),
            masks.new_empty((N, 4), dtype=torch.int64))


def postprocess_masks_stats(
    masks: Tensor, img_size: int, input_size: Sequence[int], original_size: Sequence[int],
    mask_threshold: float, stability_offset: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Fused AMG mask pass: low-res logits [N, h, w] -> (bool masks [N, H0, W0], stability [N] float32,
    boxes [N, 4] int64), one pass over the output pixels; no float mask is written at full resolution.
    See `postprocess_masks_stats_reference` (kernels take float32 logits; other dtypes are upcast)."""
    _check(isinstance(masks, Tensor) and masks.dim() == 3, ValueError,
           f"masks: expected low-res logits [N, h, w], got {_shape(masks)}")
    _check(masks.is_floating_point(), TypeError, f"masks: expected a float tensor, got {masks.dtype}")
    ih, iw, oh, ow = _postprocess_sizes(img_size, input_size, original_size)
    _check(masks.shape[1] > 0 and masks.shape[2] > 0, ValueError, f"masks: empty spatial size {_shape(masks)}")
    if masks.shape[0] > 0 and use_kernel("postprocess_masks_stats", masks):
        m = masks.float().contiguous()
        thr, hi, lo = (_as_dtype(v, torch.float32) for v in
                       (mask_threshold, mask_threshold + stability_offset, mask_threshold - stability_offset))
        return _postprocess_stats_op(m, img_size, ih, iw, oh, ow, thr, hi, lo)
    return postprocess_masks_stats_reference(masks, img_size, (ih, iw), (oh, ow), mask_threshold, stability_offset)


def rle_encode_reference(masks: Tensor) -> tuple[Tensor, Tensor]:
    """segment_anything's `mask_to_rle_pytorch`, flattened: bool [N, H, W] -> (counts int64 [T],
    offsets int64 [N + 1]); the column-major counts of mask i are counts[offsets[i]:offsets[i + 1]]."""
    n, h, w = masks.shape
    flat = masks.permute(0, 2, 1).flatten(1)
    parts, lens = [], [0]
    for i in range(n):
        change = (flat[i, 1:] ^ flat[i, :-1]).nonzero()[:, 0] + 1
        bounds = torch.cat([change.new_zeros(1), change, change.new_full((1,), h * w)])
        c = bounds[1:] - bounds[:-1]
        if h * w > 0 and flat[i, 0]:
            c = torch.cat([c.new_zeros(1), c])
        parts.append(c.cpu())
        lens.append(len(c))
    counts = torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)
    return counts.long(), torch.as_tensor(lens, dtype=torch.int64).cumsum(0)


@torch.library.custom_op("samfast::amg_rle_encode", mutates_args=())
def _amg_rle_encode_op(masks: Tensor) -> tuple[Tensor, Tensor]:
    n, dev = masks.shape[0], masks.device
    lengths = torch.empty(n, dtype=torch.int64, device=dev)
    sfx = "cuda" if masks.is_cuda else "cpu"
    extra = (cuda_stream(masks),) if masks.is_cuda else ()
    getattr(_C, f"amg_rle_count_{sfx}")(tensor_ref(masks), tensor_ref(lengths), *extra)
    offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
    counts = torch.empty(int(offsets[-1].item()), dtype=torch.int64, device=dev)
    getattr(_C, f"amg_rle_encode_{sfx}")(tensor_ref(masks), tensor_ref(offsets), tensor_ref(counts), *extra)
    return counts, offsets


@_amg_rle_encode_op.register_fake
def _(masks):
    t = torch.library.get_ctx().new_dynamic_size()
    return masks.new_empty((t,), dtype=torch.int64), masks.new_empty((masks.shape[0] + 1,), dtype=torch.int64)


def rle_encode(masks: Tensor) -> tuple[Tensor, Tensor]:
    """Uncompressed RLE of bool masks [N, H, W] -> (counts [T], offsets [N + 1]) int64 on masks' device;
    see `rle_encode_reference`."""
    _check(isinstance(masks, Tensor) and masks.dim() == 3, ValueError,
           f"masks: expected bool [N, H, W], got {_shape(masks)}")
    _check(masks.dtype == torch.bool, TypeError, f"masks: expected dtype torch.bool, got {masks.dtype}")
    if _amg_kernel("rle_encode", masks) and _amg_kernel("rle_count", masks):
        return _amg_rle_encode_op(masks.contiguous())
    counts, offsets = rle_encode_reference(masks)
    return counts.to(masks.device), offsets.to(masks.device)


def rle_decode_reference(counts: Tensor, offsets: Tensor, h: int, w: int) -> Tensor:
    """Inverse of `rle_encode_reference` -> bool [N, h, w] (row-major)."""
    out = []
    for i in range(len(offsets) - 1):
        c = counts[offsets[i]: offsets[i + 1]]
        vals = torch.arange(len(c), device=c.device) % 2 == 1
        out.append(torch.repeat_interleave(vals, c).reshape(w, h).t())
    return torch.stack(out) if out else torch.zeros(0, h, w, dtype=torch.bool)


@torch.library.custom_op("samfast::amg_rle_decode", mutates_args=())
def _amg_rle_decode_op(counts: Tensor, offsets: Tensor, h: int, w: int) -> Tensor:
    out = torch.empty((offsets.shape[0] - 1, h, w), dtype=torch.bool)
    _C.amg_rle_decode_cpu(tensor_ref(counts), tensor_ref(offsets), tensor_ref(out))
    return out


@_amg_rle_decode_op.register_fake
def _(counts, offsets, h, w):
    return counts.new_empty((offsets.shape[0] - 1, h, w), dtype=torch.bool)


def _check_rle(counts, offsets) -> tuple[Tensor, Tensor]:
    _check(isinstance(counts, Tensor) and counts.dim() == 1, ValueError, f"counts: expected [T], got {_shape(counts)}")
    _check(isinstance(offsets, Tensor) and offsets.dim() == 1 and len(offsets) >= 1, ValueError,
           f"offsets: expected [N + 1], got {_shape(offsets)}")
    return counts.detach().cpu().long().contiguous(), offsets.detach().cpu().long().contiguous()


def rle_decode(counts: Tensor, offsets: Tensor, h: int, w: int) -> Tensor:
    """RLEs (counts [T], offsets [N + 1]; each sums to h*w) -> bool masks [N, h, w] on the CPU."""
    counts, offsets = _check_rle(counts, offsets)
    _check(h >= 0 and w >= 0, ValueError, f"size must be non-negative, got ({h}, {w})")
    if _amg_kernel("rle_decode", counts):
        return _amg_rle_decode_op(counts, offsets, int(h), int(w))
    for i in range(len(offsets) - 1):
        c = counts[offsets[i]: offsets[i + 1]]
        _check(bool((c >= 0).all()) and int(c.sum()) == h * w, ValueError,
               f"rle {i}: counts must be >= 0 and sum to h * w = {h * w}")
    return rle_decode_reference(counts, offsets, h, w)


def rle_area_reference(counts: Tensor, offsets: Tensor) -> Tensor:
    """segment_anything's `area_from_rle` for each RLE -> int64 [N]."""
    return torch.tensor([int(counts[offsets[i] + 1: offsets[i + 1]: 2].sum()) for i in range(len(offsets) - 1)],
                        dtype=torch.int64)


@torch.library.custom_op("samfast::amg_rle_area", mutates_args=())
def _amg_rle_area_op(counts: Tensor, offsets: Tensor) -> Tensor:
    area = torch.empty(offsets.shape[0] - 1, dtype=torch.int64)
    _C.amg_rle_area_cpu(tensor_ref(counts), tensor_ref(offsets), tensor_ref(area))
    return area


@_amg_rle_area_op.register_fake
def _(counts, offsets):
    return counts.new_empty((offsets.shape[0] - 1,), dtype=torch.int64)


def rle_area(counts: Tensor, offsets: Tensor) -> Tensor:
    """Foreground pixels of each RLE (sum of its odd-position counts) -> int64 [N] on the CPU."""
    counts, offsets = _check_rle(counts, offsets)
    if _amg_kernel("rle_area", counts):
        return _amg_rle_area_op(counts, offsets)
    return rle_area_reference(counts, offsets)


def coco_rle_strings_reference(counts: Tensor, offsets: Tensor) -> list:
    """pycocotools' compressed RLE string (`rleToString`) of each RLE, as str."""
    out = []
    for i in range(len(offsets) - 1):
        cnts = [int(v) & 0xFFFFFFFF for v in counts[offsets[i]: offsets[i + 1]].tolist()]
        s = bytearray()
        for j, x in enumerate(cnts):
            if j > 2:
                x -= cnts[j - 2]
            more = True
            while more:
                c = x & 0x1F
                x >>= 5
                more = x != -1 if c & 0x10 else x != 0
                s.append((c | 0x20 if more else c) + 48)
        out.append(s.decode("ascii"))
    return out


@torch.library.custom_op("samfast::amg_coco_rle_strings", mutates_args=())
def _amg_coco_op(counts: Tensor, offsets: Tensor) -> tuple[Tensor, Tensor]:
    chars = torch.zeros(7 * counts.shape[0], dtype=torch.uint8)  # zeros: deterministic unused bytes
    lengths = torch.empty(offsets.shape[0] - 1, dtype=torch.int64)
    _C.amg_coco_rle_strings_cpu(tensor_ref(counts), tensor_ref(offsets), tensor_ref(chars), tensor_ref(lengths))
    return chars, lengths


@_amg_coco_op.register_fake
def _(counts, offsets):
    return (counts.new_empty((7 * counts.shape[0],), dtype=torch.uint8),
            counts.new_empty((offsets.shape[0] - 1,), dtype=torch.int64))


def coco_rle_strings(counts: Tensor, offsets: Tensor) -> list:
    """COCO compressed RLE strings (decodable by pycocotools) of RLEs given as (counts [T], offsets [N + 1])."""
    counts, offsets = _check_rle(counts, offsets)
    if not _amg_kernel("coco_rle_strings", counts):
        return coco_rle_strings_reference(counts, offsets)
    chars, lengths = _amg_coco_op(counts, offsets)
    buf = chars.numpy().tobytes()
    return [buf[7 * o: 7 * o + n].decode("ascii") for o, n in zip(offsets.tolist(), lengths.tolist())]


def remove_small_regions_reference(masks: Tensor, area_thresh: float, mode: str) -> tuple[Tensor, Tensor]:
    """segment_anything's `remove_small_regions` (cv2 8-connected components) on bool [N, H, W]
    -> (masks [N, H, W], changed [N] bool)."""
    outs, changed = [], []
    for m in masks:
        work = m ^ (mode == "holes")
        h, w = work.shape
        # label = first raster index of the component (8-connected), by min-propagation
        big = h * w
        lab = torch.where(work, torch.arange(big, device=m.device).reshape(h, w), big)
        while True:
            nxt = -F.max_pool2d(-lab[None, None].double(), 3, 1, 1)[0, 0].long()
            nxt = torch.where(work, torch.minimum(nxt, lab), big)
            if torch.equal(nxt, lab):
                break
            lab = nxt
        firsts, inv, sizes = torch.unique(lab[work], return_inverse=True, return_counts=True)
        small = sizes < area_thresh
        if not bool(small.any()):
            outs.append(m.clone()); changed.append(False)
            continue
        keep = small if mode == "holes" else ~small
        if mode != "holes" and not bool(keep.any()):
            keep = torch.zeros_like(small); keep[int(torch.argmax(sizes))] = True
        sel = torch.zeros(h, w, dtype=torch.bool, device=m.device)
        sel[work] = keep[inv]
        outs.append(m | sel if mode == "holes" else sel); changed.append(True)
    return (torch.stack(outs) if outs else masks.clone()), torch.tensor(changed, dtype=torch.bool)


def remove_small_regions(masks: Tensor, area_thresh: float, mode: str) -> tuple[Tensor, Tensor]:
    """Fill holes (mode="holes") or drop islands (mode="islands") smaller than area_thresh in bool
    masks [N, H, W] (8-connectivity) -> (masks [N, H, W] bool, changed [N] bool), on the CPU."""
    _check(mode in ("holes", "islands"), ValueError, f"mode must be 'holes' or 'islands', got {mode!r}")
    _check(isinstance(masks, Tensor) and masks.dim() == 3, ValueError, f"masks: expected [N, H, W], got {_shape(masks)}")
    masks = masks.detach().cpu().bool().contiguous()
    if not _amg_kernel("remove_small_regions", masks):
        return remove_small_regions_reference(masks, area_thresh, mode)
    return _amg_remove_small_regions_op(masks, float(area_thresh), mode == "holes")


@torch.library.custom_op("samfast::amg_remove_small_regions", mutates_args=())
def _amg_remove_small_regions_op(masks: Tensor, area_thresh: float, holes: bool) -> tuple[Tensor, Tensor]:
    out = torch.empty_like(masks)
    changed = torch.empty(masks.shape[0], dtype=torch.bool)
    _C.amg_remove_small_regions_cpu(tensor_ref(masks), tensor_ref(out), tensor_ref(changed), area_thresh, holes)
    return out, changed


@_amg_remove_small_regions_op.register_fake
def _(masks, area_thresh, holes):
    return torch.empty_like(masks), masks.new_empty((masks.shape[0],), dtype=torch.bool)
