"""SamAutomaticMaskGenerator: masks for a whole image from a grid of point prompts (drop-in for
segment_anything's), with samfast's native NMS / stability / box / RLE / COCO-RLE / small-region ops.

Needs neither torchvision, pycocotools nor cv2. Same arguments, defaults and output records as the
official generator, plus `progress` (a tqdm bar over crops x batches, when tqdm is installed).
"""
from __future__ import annotations

import sys
import warnings
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from . import ops
from .modeling import Sam
from .predictor import SamPredictor
from .utils.amg import (
    MaskData,
    area_from_rle,
    batch_iterator,
    box_area,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    coco_encode_rles,
    generate_crop_boxes,
    is_box_near_crop_edge,
    mask_to_rle,
    rle_counts_to_list,
    rles_to_masks,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)

_OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
# Bool-mask bytes per call of the fused mask pass: bounds memory on large crops (masks are processed
# in chunks of about this size; only the stable ones are kept).
FUSED_PASS_BYTES = 1 << 26


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _make_bar(progress: Optional[bool], total: int, desc: str):
    """tqdm bar on stderr unless progress is False or stderr is not a TTY; a no-op otherwise."""
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    if progress is False or not tty:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if progress:
            warnings.warn("progress=True needs tqdm (pip install tqdm); continuing without a progress bar")
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="batch", leave=False)


class SamAutomaticMaskGenerator:
    def __init__(
        self,
        model: Sam,
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[List[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        progress: Optional[bool] = None,
    ) -> None:
        """See segment_anything.SamAutomaticMaskGenerator for every argument. Differences: coco_rle
        needs no pycocotools and min_mask_region_area > 0 no cv2 (native kernels); `progress` (True /
        None) shows a tqdm bar over crops x point batches when stderr is a TTY and tqdm is installed."""
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("Exactly one of points_per_side or point_grids must be provided.")
        if points_per_side is not None:
            if int(points_per_side) < 1:
                raise ValueError(f"points_per_side must be >= 1, got {points_per_side}")
            self.point_grids = build_all_layer_point_grids(points_per_side, crop_n_layers,
                                                           crop_n_points_downscale_factor)
        else:
            self.point_grids = [np.asarray(g, dtype=np.float64) for g in point_grids]
            if len(self.point_grids) < crop_n_layers + 1:
                raise ValueError(f"point_grids: need one grid per crop layer ({crop_n_layers + 1}), "
                                 f"got {len(self.point_grids)}")
            for g in self.point_grids:
                if g.ndim != 2 or g.shape[1] != 2:
                    raise ValueError(f"point_grids: each grid must be Nx2 (x, y in [0, 1]), got {g.shape}")
        if output_mode not in _OUTPUT_MODES:
            raise ValueError(f"Unknown output_mode {output_mode!r}; expected one of {_OUTPUT_MODES}")
        if points_per_batch < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {points_per_batch}")
        if crop_n_layers < 0:
            raise ValueError(f"crop_n_layers must be >= 0, got {crop_n_layers}")

        self.predictor = SamPredictor(model)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.progress = progress

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> List[Dict[str, Any]]:
        """image: HxWx3 uint8 RGB. Returns one record per mask: segmentation (HxW bool array, or an RLE
        dict for the RLE modes), area, bbox (XYWH), predicted_iou, point_coords [[x, y]],
        stability_score, crop_box (XYWH)."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image: expected an HxWx3 uint8 numpy array, got "
                             f"{getattr(image, 'shape', type(image).__name__)}")
        mask_data = self._generate_masks(image)
        if self.min_mask_region_area > 0:
            mask_data = self.postprocess_small_regions(
                mask_data, self.min_mask_region_area, max(self.box_nms_thresh, self.crop_nms_thresh))

        rles = mask_data["rles"]
        if self.output_mode == "coco_rle":
            segmentations = coco_encode_rles(rles)
        elif self.output_mode == "binary_mask":
            segmentations = list(rles_to_masks(rles).numpy()) if rles else []
        else:
            segmentations = [rle_counts_to_list(r) for r in rles]

        anns = []
        for idx in range(len(segmentations)):
            anns.append({
                "segmentation": segmentations[idx],
                "area": area_from_rle(rles[idx]),
                "bbox": box_xyxy_to_xywh(mask_data["boxes"][idx]).tolist(),
                "predicted_iou": mask_data["iou_preds"][idx].item(),
                "point_coords": [mask_data["points"][idx].tolist()],
                "stability_score": mask_data["stability_score"][idx].item(),
                "crop_box": box_xyxy_to_xywh(mask_data["crop_boxes"][idx]).tolist(),
            })
        return anns

    # ------------------------------------------------------------------------------ internals

    def _generate_masks(self, image: np.ndarray) -> MaskData:
        orig_size = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, self.crop_n_layers, self.crop_overlap_ratio)
        n_batches = sum(-(-len(self.point_grids[i]) // self.points_per_batch) for i in layer_idxs)
        bar = _make_bar(self.progress, n_batches, f"samfast amg ({len(crop_boxes)} crop(s))")
        data = MaskData()
        try:
            for crop_box, layer_idx in zip(crop_boxes, layer_idxs):
                data.cat(self._process_crop(image, crop_box, layer_idx, orig_size, bar))
        finally:
            bar.close()

        if len(crop_boxes) > 1 and len(data["rles"]) > 0:
            scores = (1 / box_area(data["crop_boxes"])).to(data["boxes"].device)  # prefer smaller crops
            keep = ops.batched_nms(data["boxes"].float(), scores, torch.zeros(len(data["boxes"]), dtype=torch.int64),
                                   self.crop_nms_thresh)
            data.filter(keep)
        data.to_numpy()
        return data

    def _process_crop(self, image: np.ndarray, crop_box: List[int], crop_layer_idx: int,
                      orig_size: Tuple[int, ...], bar=None) -> MaskData:
        x0, y0, x1, y1 = crop_box
        cropped_im = image[y0:y1, x0:x1, :]
        cropped_im_size = cropped_im.shape[:2]
        self.predictor.set_image(cropped_im)

        points_scale = np.array(cropped_im_size)[None, ::-1]
        points_for_image = self.point_grids[crop_layer_idx] * points_scale

        data = MaskData()
        for (points,) in batch_iterator(self.points_per_batch, points_for_image):
            data.cat(self._process_batch(points, cropped_im_size, crop_box, orig_size))
            if bar is not None:
                bar.update(1)
        self.predictor.reset_image()

        keep = ops.batched_nms(data["boxes"].float(), data["iou_preds"],
                               torch.zeros(len(data["boxes"]), dtype=torch.int64), self.box_nms_thresh)
        data.filter(keep)
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.tensor(crop_box, dtype=torch.int64).repeat(len(data["rles"]), 1)
        return data

    def _process_batch(self, points: np.ndarray, im_size: Tuple[int, ...], crop_box: List[int],
                       orig_size: Tuple[int, ...]) -> MaskData:
        """One batch of point prompts [B, 2] (crop pixels) -> MaskData of its surviving masks.

        Batched decoder -> low-res logits [B*3, 256, 256] -> IoU filter (on the predictions, before any
        upsampling) -> one fused pass per mask (ops.postprocess_masks_stats: upsample to the crop size,
        threshold to a bool mask, stability score, box; no float mask at full resolution) -> stability
        filter (only the surviving bool masks are kept) -> crop-edge filter -> RLE in the image frame.
        Same kept set as the official generator, which upsamples every mask to float first."""
        orig_h, orig_w = orig_size
        thr = self.predictor.model.mask_threshold
        pts = self.predictor.transform.apply_coords(points, im_size)
        in_points = torch.as_tensor(pts, device=self.predictor.device)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
        low_res, iou_preds = self.predictor.predict_low_res_torch(in_points[:, None, :], in_labels[:, None],
                                                                  multimask_output=True)
        n_out = low_res.shape[1]
        low_res, iou_preds = low_res.flatten(0, 1), iou_preds.flatten(0, 1)     # [B*3, 256, 256], [B*3]
        point_t = torch.as_tensor(points.repeat(n_out, axis=0))               # [B*3, 2] float64
        if self.pred_iou_thresh > 0.0:
            keep = iou_preds > self.pred_iou_thresh
            low_res, iou_preds, point_t = low_res[keep], iou_preds[keep], point_t[keep.cpu()]

        # Fused pass in chunks of <= FUSED_PASS_BYTES of bool mask, so memory stays bounded on large crops.
        img_size = self.predictor.model.image_encoder.img_size
        chunk = max(1, FUSED_PASS_BYTES // max(1, im_size[0] * im_size[1]))
        parts = []
        for i in range(0, len(low_res), chunk):
            masks, stability, boxes = ops.postprocess_masks_stats(
                low_res[i:i + chunk], img_size, self.predictor.input_size, im_size, thr, self.stability_score_offset)
            idx = torch.arange(i, i + len(masks), device=masks.device)
            if self.stability_score_thresh > 0.0:
                keep = stability >= self.stability_score_thresh
                masks, stability, boxes, idx = masks[keep], stability[keep], boxes[keep], idx[keep]
            parts.append((masks, stability, boxes, idx))
        if parts:
            masks, stability, boxes, idx = (torch.cat(p) for p in zip(*parts))
        else:  # no mask passed the IoU filter
            masks = torch.zeros((0, *im_size), dtype=torch.bool, device=low_res.device)
            stability = torch.zeros(0, device=low_res.device)
            boxes = torch.zeros((0, 4), dtype=torch.int64, device=low_res.device)
            idx = torch.zeros(0, dtype=torch.int64, device=low_res.device)
        iou_preds, point_t = iou_preds[idx], point_t[idx.cpu()]
        keep = ~is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
        if not torch.all(keep):
            masks, iou_preds, point_t, stability, boxes = (
                masks[keep], iou_preds[keep], point_t[keep.cpu()], stability[keep], boxes[keep])
        rles = mask_to_rle(uncrop_masks(masks, crop_box, orig_h, orig_w), as_list=False)
        return MaskData(iou_preds=iou_preds, points=point_t, stability_score=stability, boxes=boxes, rles=rles)

    @staticmethod
    def postprocess_small_regions(mask_data: MaskData, min_area: int, nms_thresh: float) -> MaskData:
        """Fill small holes, drop small islands (native connected components), then NMS again preferring
        unchanged masks. Edits mask_data in place."""
        if len(mask_data["rles"]) == 0:
            return mask_data
        masks = rles_to_masks(mask_data["rles"])
        masks, changed_h = ops.remove_small_regions(masks, min_area, "holes")
        masks, changed_i = ops.remove_small_regions(masks, min_area, "islands")
        scores = (~(changed_h | changed_i)).float()      # 1 = unchanged (preferred by NMS)
        boxes = ops.mask_to_box(masks)
        keep = ops.batched_nms(boxes.float(), scores, torch.zeros(len(boxes), dtype=torch.int64), nms_thresh)
        redo = [int(i) for i in keep.tolist() if scores[i] == 0.0]
        if redo:
            new_rles = mask_to_rle(masks[redo], as_list=False)
            for i, rle in zip(redo, new_rles):
                mask_data["rles"][i] = rle
                mask_data["boxes"][i] = boxes[i].numpy() if isinstance(mask_data["boxes"], np.ndarray) else boxes[i]
        mask_data.filter(keep)
        return mask_data
