"""Perception-loop API: segment (and track) objects in a stream of frames.

    with samfast.Session(model, track=True) as s:
        s.set_frame(frame0, image_format="BGR")           # HxWx3 uint8 from OpenCV
        s.segment(boxes=[[10, 20, 200, 220]])             # start tracking one object
        for frame in stream:
            s.set_frame(frame, image_format="BGR")
            for det in s.track():                         # stable object ids
                print(det.object_id, det.score, det.box)

Frames: HxWx3 uint8 numpy arrays (RGB, or BGR with image_format="BGR"), or torch tensors already on
the model's device, either uint8 HxWx3 or float 3xHxW with values in 0..255. Tensor frames stay on the
device (no host round trip) and give tensor masks; numpy frames give numpy masks (`output=` overrides).

Asynchronous encoding (async_encode=True): `submit(frame)` queues a frame and starts its image
encoder on one worker thread (on CUDA: on a side stream) right away; every `segment()` / `track()`
call first makes the oldest submitted frame current (waiting for its embedding), then decodes it. So

    s.submit(frames[0])
    for nxt in frames[1:] + [None]:
        if nxt is not None:
            s.submit(nxt)        # encoder of frame i+1 runs ...
        dets = s.track()         # ... while frame i is decoded here
overlaps the encoder of the next frame with the decoding of the current one. To prompt the current
frame again without advancing, pass `advance=False`. `submit` works with async_encode=False too (the
frame is then encoded lazily when it becomes current), so both modes give identical results.
`set_frame(f)` is `submit(f)` + advance, and is refused while submitted frames are still pending.
`close()` (or leaving the `with` block) joins the worker thread.
"""
from __future__ import annotations

import collections
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from .modeling import Sam
from .predictor import SamPredictor, _as_array

ArrayOrTensor = Union[np.ndarray, torch.Tensor]


@dataclass
class Detection:
    """One segmented object in one frame.

    object_id: stable id (kept across frames while tracked).
    mask: bool HxW (frame size), numpy array or torch tensor on the model's device.
    score: SAM's predicted IoU for the mask.
    box: float32 (4,) XYXY box of the mask in frame pixels (inclusive max, as segment_anything's
      batched_mask_to_box); zeros for an empty mask.
    low_res_logits: float32 1x256x256 mask logits (what SAM accepts back as mask_input).
    """

    object_id: int
    mask: ArrayOrTensor
    score: float
    box: ArrayOrTensor
    low_res_logits: ArrayOrTensor


@dataclass
class _Encoded:
    features: torch.Tensor               # 1xCxhxw image embedding
    input_size: Tuple[int, int]          # resized (H', W'), long side == img_size
    original_size: Tuple[int, int]       # frame (H, W)
    is_tensor: bool                      # frame came in as a torch tensor
    event: Any = None                    # CUDA event recorded after encoding (async on CUDA)


@dataclass
class _Track:
    box: torch.Tensor                    # (4,) XYXY in frame pixels
    low_res: torch.Tensor                # 1x256x256 logits
    score: float
    empty: bool                          # the mask has no pixels
    size: Tuple[int, int]                # (H, W) of the frame the box refers to


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Bool BxHxW -> float Bx4 XYXY (inclusive max); rows of zeros for empty masks."""
    B, H, W = masks.shape
    if B == 0:
        return masks.new_zeros((0, 4), dtype=torch.float32)
    rows, cols = masks.any(dim=2), masks.any(dim=1)                         # BxH, BxW
    ys = torch.arange(H, device=masks.device)
    xs = torch.arange(W, device=masks.device)
    y1 = torch.where(rows, ys, -1).amax(dim=1)
    y0 = torch.where(rows, ys, H).amin(dim=1)
    x1 = torch.where(cols, xs, -1).amax(dim=1)
    x0 = torch.where(cols, xs, W).amin(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    return boxes * (y1 >= 0)[:, None]


class Session:
    """Segment / track objects over a stream of frames with one SAM model (see module docstring).

    model_or_predictor: a samfast `Sam` (e.g. from samfast.load) or a `SamPredictor`; the session
      drives that predictor's state (features of the current frame), so `session.predictor.predict`
      also works on the current frame.
    track: keep the objects found by `segment()` and re-find them in later frames with `track()`.
    use_mask_input: when tracking, also feed each object's previous low-res logits as mask_input.
    async_encode: encode submitted frames on a worker thread / CUDA side stream.
    score_threshold: tracked objects whose score falls below it (or whose mask is empty) are dropped.
    output: "auto" (numpy for numpy frames, tensors for tensor frames), "numpy" or "torch".
    """

    def __init__(self, model_or_predictor: Union[Sam, SamPredictor], track: bool = False,
                 use_mask_input: bool = False, async_encode: bool = False, score_threshold: float = 0.5,
                 output: str = "auto") -> None:
        if isinstance(model_or_predictor, SamPredictor):
            self.predictor = model_or_predictor
        elif isinstance(model_or_predictor, Sam):
            self.predictor = SamPredictor(model_or_predictor)
        else:
            raise TypeError("model_or_predictor: expected a samfast Sam model or SamPredictor, "
                            f"got {type(model_or_predictor).__name__}")
        if output not in ("auto", "numpy", "torch"):
            raise ValueError(f"output must be 'auto', 'numpy' or 'torch', got {output!r}")
        self.model: Sam = self.predictor.model
        self.track_enabled = bool(track)
        self.use_mask_input = bool(use_mask_input)
        self.async_encode = bool(async_encode)
        self.score_threshold = float(score_threshold)
        self.output = output
        self.tracks: Dict[int, _Track] = {}
        self.frame_index = -1                       # index of the current frame (-1: none yet)
        self._next_id = 0
        self._pending: Deque[Union[Future, Tuple]] = collections.deque()
        self._current: Optional[_Encoded] = None
        self._executor: Optional[ThreadPoolExecutor] = None
        self._stream = None
        self._closed = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Finish pending encodes, join the worker thread and drop frame state. Idempotent."""
        with self._lock:
            self._closed = True
            ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=True)
        self._pending.clear()
        self._current = None
        self.predictor.reset_image()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        ex = getattr(self, "_executor", None)
        if ex is not None:
            ex.shutdown(wait=False)

    def reset_tracks(self) -> None:
        """Forget all tracked objects (ids keep counting up)."""
        self.tracks.clear()

    # ------------------------------------------------------------------ frames

    def submit(self, frame: ArrayOrTensor, image_format: str = "RGB") -> None:
        """Queue `frame` (checked now); with async_encode its resize + encoder start now on the worker."""
        if self._closed:
            raise RuntimeError("session is closed")
        self._check_frame(frame, image_format)
        if not self.async_encode:
            self._pending.append((frame, image_format))
            return
        event = None
        if self.model.device.type == "cuda":
            if self._stream is None:
                self._stream = torch.cuda.Stream(device=self.model.device)
            # tensor frames may still be written by work queued on this (the caller's) stream
            event = torch.cuda.current_stream(self.model.device).record_event()
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="samfast-encode")
            self._pending.append(self._executor.submit(self._encode, frame, image_format, event))

    def set_frame(self, frame: ArrayOrTensor, image_format: str = "RGB") -> None:
        """Make `frame` the current frame (encodes it now). See the module docstring for shapes."""
        if self._pending:
            raise RuntimeError("set_frame() while submitted frames are pending; call segment()/track() "
                               "to consume them first, or use submit() only")
        self.submit(frame, image_format)
        self._advance()

    @property
    def pending(self) -> int:
        """Number of submitted frames not yet made current."""
        return len(self._pending)

    def _advance(self) -> bool:
        """Make the oldest submitted frame current. False when none is pending."""
        if not self._pending:
            return False
        item = self._pending.popleft()
        enc = item.result() if isinstance(item, Future) else self._encode(*item)
        if enc.event is not None:                    # encoded on the side stream
            cur = torch.cuda.current_stream(enc.features.device)
            cur.wait_event(enc.event)
            enc.features.record_stream(cur)
            enc.event = None
        self._current = enc
        p = self.predictor
        p.reset_image()
        p.features, p.input_size, p.original_size = enc.features, enc.input_size, enc.original_size
        p.is_image_set = True
        self.frame_index += 1
        return True

    @staticmethod
    def _check_frame(frame: ArrayOrTensor, image_format: str) -> None:
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        if isinstance(frame, np.ndarray):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or min(frame.shape[:2]) < 1:
                raise ValueError(f"frame: expected an HxWx3 uint8 array, got {frame.dtype} {frame.shape}")
        elif isinstance(frame, torch.Tensor):
            ok = (frame.dtype == torch.uint8 and frame.dim() == 3 and frame.shape[2] == 3) or \
                 (frame.is_floating_point() and frame.dim() == 3 and frame.shape[0] == 3)
            if not ok or frame.numel() == 0:
                raise ValueError(f"frame: expected a uint8 HxWx3 or float 3xHxW tensor, got {frame.dtype} "
                                 f"{tuple(frame.shape)}")
        else:
            raise TypeError(f"frame: expected a numpy array or torch tensor, got {type(frame).__name__}")

    def _prepare(self, frame: ArrayOrTensor, image_format: str) -> Tuple[torch.Tensor, Tuple[int, int], bool]:
        """Checked frame -> (1x3xH'xW' tensor on the device, long side img_size; (H, W); is_tensor)."""
        flip = image_format != self.model.image_format
        dev, tf = self.model.device, self.predictor.transform
        if isinstance(frame, np.ndarray):   # exactly SamPredictor.set_image's path (PIL bilinear resize)
            img = frame[..., ::-1] if flip else frame
            x = torch.as_tensor(tf.apply_image(img), device=dev).permute(2, 0, 1).contiguous()[None]
            return x, (int(frame.shape[0]), int(frame.shape[1])), False
        t = frame.to(dev, non_blocking=True)
        if t.dtype == torch.uint8:
            t = t.permute(2, 0, 1)                                             # HxWx3 -> 3xHxW
        if flip:
            t = t.flip(0)
        orig = (int(t.shape[1]), int(t.shape[2]))
        t = t[None].float()
        if max(orig) != self.model.image_encoder.img_size:
            t = tf.apply_image_torch(t)
        return t, orig, True

    @torch.no_grad()
    def _encode(self, frame: ArrayOrTensor, image_format: str, event=None) -> _Encoded:
        """Resize + image encoder (on the worker thread, and CUDA side stream, in async mode)."""
        model = self.model
        enc_dtype = model.image_encoder.patch_embed.proj.weight.dtype
        if event is None:
            x, orig, is_tensor = self._prepare(frame, image_format)
            feats = model.image_encoder(model.preprocess(x.to(torch.float32)).to(enc_dtype))
            return _Encoded(feats, tuple(x.shape[-2:]), orig, is_tensor)
        with torch.cuda.stream(self._stream):
            self._stream.wait_event(event)
            if isinstance(frame, torch.Tensor) and frame.is_cuda:
                frame.record_stream(self._stream)
            x, orig, is_tensor = self._prepare(frame, image_format)
            feats = model.image_encoder(model.preprocess(x.to(torch.float32)).to(enc_dtype))
            done = self._stream.record_event()
        return _Encoded(feats, tuple(x.shape[-2:]), orig, is_tensor, done)

    # ------------------------------------------------------------------ prompts

    def segment(self, points=None, labels=None, boxes=None, multimask_output: bool = False,
                advance: bool = True) -> List[Detection]:
        """Segment new objects in the current frame (frame pixels).

        points: Nx2 (x, y) for one object, or BxNx2 for B objects; labels: N or BxN (1 fg, 0 bg;
        default all 1). boxes: 4 or Bx4 XYXY. Points and boxes together must share B. With
        multimask_output, SAM proposes 3 masks per object and the best-scoring one is kept.
        With track=True the new objects are tracked from now on, and calling segment() with no
        prompts is the same as track(). Returns one Detection per object.
        """
        if advance:
            self._advance()
        if points is None and boxes is None:
            if self.track_enabled:
                return self.track(advance=False)
            raise ValueError("segment(): give points and/or boxes")
        self._require_frame()
        tf, orig, dev = self.predictor.transform, self._current.original_size, self.model.device
        coords_t = labels_t = boxes_t = None
        if points is not None:
            pc = _as_array(points, "points")
            if pc.ndim == 2:
                pc = pc[None]
            if pc.ndim != 3 or pc.shape[-1] != 2 or pc.shape[1] < 1:
                raise ValueError(f"points: expected Nx2 or BxNx2 (x, y), got shape {pc.shape}")
            pl = np.ones(pc.shape[:2]) if labels is None else _as_array(labels, "labels").reshape(-1)
            if pl.size != pc.shape[0] * pc.shape[1]:
                raise ValueError(f"labels: expected {pc.shape[0] * pc.shape[1]} values to match points "
                                 f"{pc.shape}, got {pl.size}")
            coords_t = torch.as_tensor(tf.apply_coords(pc, orig), dtype=torch.float, device=dev)
            labels_t = torch.as_tensor(pl.reshape(pc.shape[:2]), dtype=torch.int, device=dev)
        elif labels is not None:
            raise ValueError("labels given without points")
        if boxes is not None:
            b = _as_array(boxes, "boxes")
            if b.size == 0 or b.size % 4:
                raise ValueError(f"boxes: expected 4 or Bx4 values (x0, y0, x1, y1), got shape {b.shape}")
            boxes_t = torch.as_tensor(tf.apply_boxes(b.reshape(-1, 4), orig), dtype=torch.float, device=dev)
        masks, scores, low_res = self._decode(coords_t, labels_t, boxes_t, None, multimask_output)
        ids = list(range(self._next_id, self._next_id + masks.shape[0]))
        self._next_id += len(ids)
        dets = self._detections(ids, masks, scores, low_res)
        if self.track_enabled:
            for d, box, lr, s, e in zip(dets, self._last_boxes, low_res, scores.tolist(), self._last_empty):
                self.tracks[d.object_id] = _Track(box, lr, s, e, orig)
            self._prune()
        return dets

    def track(self, advance: bool = True) -> List[Detection]:
        """Re-find every tracked object in the current frame: prompt each with its previous mask's
        box (and previous low-res logits with use_mask_input), batched in one decoder call. Objects
        scoring under score_threshold or with empty masks are dropped. Returns Detections by id."""
        if not self.track_enabled:
            raise RuntimeError("track() needs Session(..., track=True)")
        if advance:
            self._advance()
        self._require_frame()
        if not self.tracks:
            return []
        ids = sorted(self.tracks)
        orig = self._current.original_size
        scale = [torch.tensor([orig[1] / t.size[1], orig[0] / t.size[0]] * 2, device=t.box.device)
                 if t.size != orig else None for t in (self.tracks[i] for i in ids)]   # frame size changed
        boxes = torch.stack([self.tracks[i].box if sc is None else self.tracks[i].box * sc
                             for i, sc in zip(ids, scale)])                          # Bx4 frame pixels
        boxes_t = self.predictor.transform.apply_boxes_torch(boxes, orig)
        mask_in = torch.stack([self.tracks[i].low_res for i in ids]) if self.use_mask_input else None
        masks, scores, low_res = self._decode(None, None, boxes_t, mask_in, False)
        dets = self._detections(ids, masks, scores, low_res)
        for d, box, lr, s, e in zip(dets, self._last_boxes, low_res, scores.tolist(), self._last_empty):
            self.tracks[d.object_id] = _Track(box, lr, s, e, orig)
        self._prune()
        return [d for d in dets if d.object_id in self.tracks]

    # ------------------------------------------------------------------ internals

    def _require_frame(self) -> None:
        if self._current is None:
            raise RuntimeError("no current frame: call set_frame(frame) or submit(frame) first")

    def _decode(self, coords, labels, boxes, mask_in, multimask: bool):
        """-> masks Bx H x W bool, scores B, low_res Bx1x256x256 (best of 3 when multimask)."""
        masks, iou, low_res = self.predictor.predict_torch(coords, labels, boxes, mask_in, multimask)
        if multimask:
            best = iou.argmax(dim=1)
            ar = torch.arange(iou.shape[0], device=iou.device)
            masks, iou, low_res = masks[ar, best][:, None], iou[ar, best][:, None], low_res[ar, best][:, None]
        return masks[:, 0], iou[:, 0], low_res

    def _detections(self, ids, masks: torch.Tensor, scores: torch.Tensor, low_res: torch.Tensor):
        boxes = masks_to_boxes(masks)
        self._last_boxes = boxes
        self._last_empty = (~masks.flatten(1).any(dim=1)).tolist()
        as_numpy = self.output == "numpy" or (self.output == "auto" and not self._current.is_tensor)
        if as_numpy:
            masks_o, boxes_o, low_o = masks.cpu().numpy(), boxes.cpu().numpy(), low_res.cpu().numpy()
        else:
            masks_o, boxes_o, low_o = masks, boxes, low_res
        return [Detection(i, masks_o[k], float(s), boxes_o[k], low_o[k])
                for k, (i, s) in enumerate(zip(ids, scores.tolist()))]

    def _prune(self) -> None:
        for i in [i for i, t in self.tracks.items() if t.empty or not t.score >= self.score_threshold]:
            del self.tracks[i]
