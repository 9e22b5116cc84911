"""Mask decoder as one CUDA graph per prompt shape: a prompt costs one graph replay.

A graph is captured on first use for each key (batch size, number of points, box or not,
multimask, original size, input size, logits or binary) and covers prompt encoding, the fast decoder
(`FastMaskDecoder`) and the fused post-processing. Per-image state lives in static buffers: a new
image copies its `DecoderCache` into them (a few MB, device to device) and every captured graph
stays valid. Mask prompts (`mask_input`) are not graphed; they take the eager path.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from . import ops
from .fast_decoder import DecoderCache, FastMaskDecoder


class CudaGraphDecoder:
    def __init__(self, fast_decoder: FastMaskDecoder, max_graphs: int = 32) -> None:
        self.fast = fast_decoder
        self.model = fast_decoder.sam
        self.max_graphs = max_graphs
        self._static_cache: Optional[DecoderCache] = None
        self._loaded: Optional[DecoderCache] = None  # the image cache now in the static buffers
        self._graphs: Dict[tuple, Tuple[torch.cuda.CUDAGraph, dict, tuple]] = {}
        self._pool = None

    def load_cache(self, cache: DecoderCache) -> None:
        """Copy a new image's cache into the static buffers the graphs read."""
        self._loaded = cache
        if self._static_cache is None or self._static_cache.x0.shape != cache.x0.shape:
            self._static_cache = DecoderCache(*(t.clone() if isinstance(t, Tensor) else t for t in (
                cache.x0, cache.pe, cache.k0, cache.v0, cache.q0, cache.hw, cache.features)))
            self._graphs.clear()
            return
        s = self._static_cache
        for dst, src in ((s.x0, cache.x0), (s.pe, cache.pe), (s.k0, cache.k0), (s.v0, cache.v0),
                         (s.q0, cache.q0), (s.features, cache.features)):
            dst.copy_(src, non_blocking=True)

    def _forward(self, coords, labels, boxes, multimask, input_size, original_size, threshold):
        pe_mod = self.model.prompt_encoder
        points = (coords, labels) if coords is not None else None
        sparse, _ = pe_mod(points=points, boxes=boxes, masks=None)
        low_res, iou = self.fast(self._static_cache, sparse, None, multimask)
        low_res, iou = low_res.float(), iou.float()
        masks = ops.postprocess_masks(low_res, self.model.image_encoder.img_size, input_size, original_size, threshold)
        return masks, iou, low_res

    @torch.no_grad()
    def __call__(self, cache: DecoderCache, coords: Optional[Tensor], labels: Optional[Tensor],
                 boxes: Optional[Tensor], multimask: bool, input_size, original_size, threshold: Optional[float]):
        """cache: the current image's `DecoderCache`; prompts in the resized frame (see predict_torch)."""
        if cache is not self._loaded:
            self.load_cache(cache)
        key = (None if coords is None else tuple(coords.shape), None if boxes is None else tuple(boxes.shape),
               bool(multimask), tuple(input_size), tuple(original_size), threshold)
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= self.max_graphs:
                self._graphs.pop(next(iter(self._graphs)))
            static_in = {
                "coords": None if coords is None else coords.clone(),
                "labels": None if labels is None else labels.clone(),
                "boxes": None if boxes is None else boxes.clone(),
            }
            args = (multimask, tuple(input_size), tuple(original_size), threshold)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm up (allocations, lazy init) outside the capture
                for _ in range(2):
                    self._forward(static_in["coords"], static_in["labels"], static_in["boxes"], *args)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                out = self._forward(static_in["coords"], static_in["labels"], static_in["boxes"], *args)
            self._pool = graph.pool()
            entry = (graph, static_in, out)
            self._graphs[key] = entry
        graph, static_in, out = entry
        for name, t in (("coords", coords), ("labels", labels), ("boxes", boxes)):
            if t is not None:
                static_in[name].copy_(t, non_blocking=True)
        graph.replay()
        return tuple(o.clone() for o in out)
