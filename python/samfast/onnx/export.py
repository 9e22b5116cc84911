"""ONNX export of samfast's SAM: the prompt decoder (official `SamOnnxModel` I/O contract) and the
image encoder (optionally with resize / normalise / pad inside the graph).

Uses the TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`): it needs no extra
packages, handles SAM's data-dependent output size (`orig_im_size`) and is what the official
export script uses. The samfast custom ops (`samfast::rel_pos_attention`, ...) have no ONNX
symbolic, so every export runs under `samfast.ops.backend("reference")` (plain PyTorch).

Decoder graph (identical to segment-anything's `scripts/export_onnx_model.py`):
  inputs   image_embeddings [1, 256, h, w] f32   (h = w = image_size / 16; 64 for SAM)
           point_coords     [1, N, 2]      f32   (x, y in the resized (longest side = image_size) frame;
                                                  N dynamic; add a (0, 0) point labelled -1 when no box)
           point_labels     [1, N]         f32   (1 fg, 0 bg, 2 / 3 box corners, -1 padding)
           mask_input       [1, 1, 4h, 4w] f32   (low-res logits; 256x256 for SAM)
           has_mask_input   [1]            f32   (1 when mask_input is used, else 0)
           orig_im_size     [2]            f32   (H, W of the original image)
  outputs  masks            [1, K, H, W]   f32   (logits at orig_im_size; K = 4, or 1 with return_single_mask)
           iou_predictions  [1, K]         f32   (or stability scores with use_stability_score)
           low_res_masks    [1, K, 4h, 4w] f32
  With return_extra_metrics the outputs are masks, iou_predictions, stability_scores [1, K],
  areas [1, K] (int64), low_res_masks (the official script leaves the last two unnamed).

Encoder graph:
  preprocess=False: image [1, 3, S, S] f32, normalised and zero-padded (as `Sam.preprocess`)
                    -> image_embeddings [1, 256, S/16, S/16] f32
  preprocess=True:  image [H, W, 3] uint8 RGB, any H, W
                    -> resize longest side to S (bilinear, half-pixel, NO antialias, rounded to
                    uint8 levels), normalise, zero-pad -> image_embeddings. This approximates the
                    PIL resize `SamPredictor.set_image` uses (exact when no resize is needed,
                    close when upscaling, softer aliasing differences when downscaling).

dtype=torch.float16: weights and activations of the image encoder and of the mask decoder's
transformer / heads are fp16; the graph I/O stays float32 (casts at the boundary), and the prompt
encoding (sin/cos of point coordinates), mask upscaling to the original size and the stability
score stay float32 for accuracy. `low_res_masks` is cast back to float32.
"""
from __future__ import annotations

import copy
import os
import warnings
from typing import Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from ..modeling import Sam

__all__ = ["export_onnx", "export_official_decoder", "SamOnnxDecoder", "SamOnnxEncoder", "DECODER_INPUTS"]

DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input",
                  "orig_im_size")


def stability_score(masks: Tensor, mask_threshold: float, offset: float) -> Tensor:
    """IoU of the masks thresholded at threshold +- offset: [B, K, H, W] logits -> [B, K] (as
    segment_anything's `calculate_stability_score`; counts summed in float32, exact below 2^24)."""
    inter = (masks > (mask_threshold + offset)).to(torch.float32).sum(-1).sum(-1)
    union = (masks > (mask_threshold - offset)).to(torch.float32).sum(-1).sum(-1)
    return inter / union


class SamOnnxDecoder(nn.Module):
    """Prompt encoder + mask decoder + mask postprocessing of a samfast `Sam`, traceable, with the
    official `SamOnnxModel` forward signature (see the module docstring for shapes)."""

    def __init__(self, model: Sam, return_single_mask: bool = False, use_stability_score: bool = False,
                 return_extra_metrics: bool = False, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder.float()
        self.mask_decoder = model.mask_decoder.to(dtype)
        self.dtype = dtype
        self.img_size = int(model.image_encoder.img_size)
        self.mask_threshold = float(model.mask_threshold)
        self.return_single_mask = return_single_mask
        self.use_stability_score = use_stability_score
        self.return_extra_metrics = return_extra_metrics
        self.stability_score_offset = 1.0
        with torch.no_grad():
            self.register_buffer("image_pe", self.prompt_encoder.get_dense_pe().to(dtype), persistent=False)

    # ---------------------------------------------------------------- prompt encoding (float32)

    def _embed_points(self, point_coords: Tensor, point_labels: Tensor) -> Tensor:
        """[1, N, 2] coords, [1, N] float labels -> [1, N, 256]."""
        pe = self.prompt_encoder
        coords = (point_coords + 0.5) / self.img_size
        emb = pe.pe_layer._pe_encoding(coords)
        labels = point_labels.unsqueeze(-1).expand_as(emb)
        emb = emb * (labels != -1)
        emb = emb + pe.not_a_point_embed.weight * (labels == -1)
        for i in range(pe.num_point_embeddings):
            emb = emb + pe.point_embeddings[i].weight * (labels == i)
        return emb

    def _embed_masks(self, mask_input: Tensor, has_mask_input: Tensor) -> Tensor:
        """[1, 1, 4h, 4w], [1] -> dense [1, 256, h, w]."""
        pe = self.prompt_encoder
        emb = has_mask_input * pe.mask_downscaling(mask_input)
        return emb + (1 - has_mask_input) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)

    # ---------------------------------------------------------------- mask decoder

    def _predict_masks(self, image_embeddings: Tensor, sparse: Tensor, dense: Tensor) -> Tuple[Tensor, Tensor]:
        """[1, C, h, w], [B, T, C], [B, C, h, w] -> masks [B, 4, 4h, 4w], iou [B, 4] (all mask tokens).

        Same computation as `MaskDecoder.predict_masks` with the fused mask head written out in
        nn modules (so `gelu_approximate` reaches every GELU and no custom op is traced)."""
        dec = self.mask_decoder
        tokens = dec.assemble_tokens(sparse)
        src = image_embeddings + dense
        b, c, h, w = src.shape
        pos = self.image_pe.expand(b, -1, -1, -1)
        hs, keys = dec.transformer(src, pos, tokens)
        iou_out = hs[:, 0, :]
        mask_out = hs[:, 1:1 + dec.num_mask_tokens, :]
        up = dec.output_upscaling(keys.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack([mlp(mask_out[:, i, :]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1)
        _, cu, hu, wu = up.shape
        masks = (hyper @ up.reshape(b, cu, hu * wu)).reshape(b, -1, hu, wu)
        return masks, dec.iou_prediction_head(iou_out)

    # ---------------------------------------------------------------- postprocessing (float32)

    def _resize_longest(self, size: Tensor) -> Tensor:
        size = size.to(torch.float32)
        return torch.floor(size * (self.img_size / torch.max(size)) + 0.5).to(torch.int64)

    def _postprocess(self, masks: Tensor, orig_im_size: Tensor) -> Tensor:
        """[1, K, 4h, 4w] -> [1, K, H, W] logits (upscale to S, crop the unpadded part, resize)."""
        masks = F.interpolate(masks, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        pre = self._resize_longest(orig_im_size)
        masks = masks[..., : pre[0], : pre[1]]
        hw = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(hw[0], hw[1]), mode="bilinear", align_corners=False)

    def _select(self, masks: Tensor, scores: Tensor, num_points) -> Tuple[Tensor, Tensor]:
        """Official `select_masks`: token 0 when > 2 points (incl. padding / box corners), else
        the best-scoring multimask token; the 1000x reweighting avoids control flow."""
        k = self.mask_decoder.num_mask_tokens
        reweight = torch.tensor([[1000.0] + [0.0] * (k - 1)], dtype=scores.dtype)
        best = torch.argmax(scores + (num_points - 2.5) * reweight, dim=1, keepdim=True)  # [B, 1]
        b, _, h, w = masks.shape
        masks = torch.gather(masks, 1, best[:, :, None, None].expand(b, 1, h, w))
        return masks, torch.gather(scores, 1, best)

    @torch.no_grad()
    def forward(self, image_embeddings: Tensor, point_coords: Tensor, point_labels: Tensor,
                mask_input: Tensor, has_mask_input: Tensor, orig_im_size: Tensor):
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input)
        dt = self.dtype
        masks, scores = self._predict_masks(image_embeddings.to(dt), sparse.to(dt), dense.to(dt))
        masks, scores = masks.float(), scores.float()
        if self.use_stability_score:
            scores = stability_score(masks, self.mask_threshold, self.stability_score_offset)
        if self.return_single_mask:
            masks, scores = self._select(masks, scores, point_coords.shape[1])
        upscaled = self._postprocess(masks, orig_im_size)
        if self.return_extra_metrics:
            stab = stability_score(upscaled, self.mask_threshold, self.stability_score_offset)
            areas = (upscaled > self.mask_threshold).to(torch.int64).sum(-1).sum(-1)
            return upscaled, scores, stab, areas, masks
        return upscaled, scores, masks


class SamOnnxEncoder(nn.Module):
    """Image encoder, optionally with resize-longest-side / normalise / pad in front of it."""

    def __init__(self, model: Sam, preprocess: bool = False, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder.to(dtype)
        self.dtype = dtype
        self.img_size = int(model.image_encoder.img_size)
        self.preprocess = preprocess
        self.register_buffer("pixel_mean", model.pixel_mean.detach().float().reshape(1, 3, 1, 1).clone(), False)
        self.register_buffer("pixel_std", model.pixel_std.detach().float().reshape(1, 3, 1, 1).clone(), False)

    def _preprocess(self, image: Tensor) -> Tensor:
        """[H, W, 3] uint8 -> [1, 3, S, S] normalised, zero-padded float32."""
        s = self.img_size
        x = image.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
        hw = torch._shape_as_tensor(image)[:2].to(torch.float32)
        new = torch.floor(hw * (s / torch.max(hw)) + 0.5).to(torch.int64)
        x = F.interpolate(x, size=(new[0], new[1]), mode="bilinear", align_corners=False)
        x = torch.clamp(torch.round(x), 0.0, 255.0)  # uint8 levels, as the PIL path
        x = (x - self.pixel_mean) / self.pixel_std
        return F.pad(x, (0, s - new[1], 0, s - new[0]))

    @torch.no_grad()
    def forward(self, image: Tensor) -> Tensor:
        x = self._preprocess(image) if self.preprocess else image
        return self.image_encoder(x.to(self.dtype)).to(torch.float32)


def _decoder_dummies(model: Sam, n: int = 5) -> Tuple[Tensor, ...]:
    pe = model.prompt_encoder
    h, w = pe.image_embedding_size
    mh, mw = pe.mask_input_size
    s = model.image_encoder.img_size
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(1, pe.embed_dim, h, w, generator=g),
        torch.randint(0, s, (1, n, 2), generator=g).to(torch.float32),
        torch.randint(0, 4, (1, n), generator=g).to(torch.float32),
        torch.randn(1, 1, mh, mw, generator=g),
        torch.tensor([1.0]),
        torch.tensor([1.5 * s, 2.2 * s]).floor(),
    )


def export_onnx(
    model: Sam,
    path: Union[str, os.PathLike],
    part: str = "decoder",
    opset: int = 17,
    dtype: torch.dtype = torch.float32,
    return_single_mask: bool = False,
    use_stability_score: bool = False,
    return_extra_metrics: bool = False,
    gelu_approximate: bool = False,
    dynamic: bool = True,
    preprocess: bool = False,
    check: bool = True,
) -> str:
    """Export `model`'s prompt decoder or image encoder to an ONNX file; returns the path.

    part: "decoder" (official SamOnnxModel I/O contract) or "encoder" (see module docstring).
    opset: >= 17. dtype: torch.float32 or torch.float16 (fp16 weights/activations, float32 I/O).
    return_single_mask / use_stability_score / return_extra_metrics: as the official export script
      (decoder only). gelu_approximate: tanh GELU (faster on some runtimes, e.g. TensorRT).
    dynamic: decoder: dynamic number of points N (official); dynamic=False fixes N = 5 for
      runtimes that want static shapes (pad prompts with (0, 0) points labelled -1). The encoder
      input is static [1, 3, S, S]; with preprocess its H and W are always dynamic.
    preprocess: encoder only: take a uint8 [H, W, 3] RGB image and resize/normalise/pad in-graph.
    check: run `onnx.checker.check_model` and `onnx.shape_inference.infer_shapes` on the result.
    The model is copied; `model` itself is not modified. Needs `pip install onnx` (for `check`);
    the exported graph runs in onnxruntime / onnxruntime-gpu (CUDA, TensorRT providers).
    """
    if not isinstance(model, Sam):
        raise TypeError(f"model: expected a samfast Sam model, got {type(model).__name__}")
    if part not in ("decoder", "encoder"):
        raise ValueError(f"part must be 'decoder' or 'encoder', got {part!r}")
    if not isinstance(opset, int) or opset < 17:
        raise ValueError(f"opset must be an int >= 17, got {opset!r}")
    if dtype not in (torch.float32, torch.float16):
        raise TypeError(f"dtype must be torch.float32 or torch.float16, got {dtype}")
    if part == "encoder" and (return_single_mask or use_stability_score or return_extra_metrics):
        raise ValueError("return_single_mask / use_stability_score / return_extra_metrics apply to part='decoder'")
    if part == "decoder" and preprocess:
        raise ValueError("preprocess applies to part='encoder'")
    path = os.fspath(path)
    m = copy.deepcopy(model).cpu().float().eval()
    if gelu_approximate:
        for mod in m.modules():
            if isinstance(mod, nn.GELU):
                mod.approximate = "tanh"
    s = m.image_encoder.img_size
    if part == "decoder":
        wrapper = SamOnnxDecoder(m, return_single_mask, use_stability_score, return_extra_metrics, dtype).eval()
        args = _decoder_dummies(m)
        input_names = list(DECODER_INPUTS)
        output_names = ["masks", "iou_predictions", "low_res_masks"]
        if return_extra_metrics:
            output_names = ["masks", "iou_predictions", "stability_scores", "areas", "low_res_masks"]
        dyn = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}} if dynamic else {}
    else:
        wrapper = SamOnnxEncoder(m, preprocess, dtype).eval()
        if preprocess:
            g = torch.Generator().manual_seed(0)
            args = (torch.randint(0, 256, (s * 3 // 4, s + s // 4, 3), generator=g).to(torch.uint8),)
            dyn = {"image": {0: "height", 1: "width"}}
        else:
            args = (torch.randn(1, 3, s, s),)
            dyn = {}
        input_names, output_names = ["image"], ["image_embeddings"]

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with ops.backend("reference"), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer / deprecation warnings about the legacy exporter
        torch.onnx.export(
            wrapper, args, path, dynamo=False, export_params=True, opset_version=opset,
            do_constant_folding=True, input_names=input_names, output_names=output_names,
            dynamic_axes=dyn or None,
        )
    _add_metadata(path, m, part, dtype, return_single_mask, use_stability_score, return_extra_metrics, preprocess)
    if check:
        import onnx

        onnx.checker.check_model(path)
        onnx.shape_inference.infer_shapes(onnx.load(path, load_external_data=False), strict_mode=True)
    return path


def _add_metadata(path: str, m: Sam, part: str, dtype, single: bool, stab: bool, extra: bool, pre: bool) -> None:
    """Record what the graph is (read by `samfast.onnx.OnnxPredictor`); needs onnx, skipped without."""
    try:
        import onnx
    except ImportError:
        return
    proto = onnx.load(path, load_external_data=False)  # > 2 GB graphs keep their external data file
    meta = {
        "samfast.part": part, "samfast.img_size": str(m.image_encoder.img_size),
        "samfast.dtype": "float16" if dtype == torch.float16 else "float32",
        "samfast.mask_threshold": repr(float(m.mask_threshold)),
        "samfast.pixel_mean": ",".join(repr(float(v)) for v in m.pixel_mean.flatten()),
        "samfast.pixel_std": ",".join(repr(float(v)) for v in m.pixel_std.flatten()),
        "samfast.return_single_mask": str(int(single)), "samfast.use_stability_score": str(int(stab)),
        "samfast.return_extra_metrics": str(int(extra)), "samfast.preprocess": str(int(pre)),
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        p = proto.metadata_props.add()
        p.key, p.value = k, v
    proto.producer_name = "samfast"
    onnx.save(proto, path)


def export_official_decoder(official_model, path: Union[str, os.PathLike], opset: int = 17,
                            return_single_mask: bool = False, use_stability_score: bool = False,
                            return_extra_metrics: bool = False) -> str:
    """Oracle for tests / benchmarks: segment-anything's own `SamOnnxModel` on an official `Sam`,
    exported exactly as its `scripts/export_onnx_model.py` does (needs segment_anything).

    Caveat of that graph (segment-anything issue #56, fixed upstream after the 1.0 PyPI release):
    the crop to the pre-padded size is traced as a constant from the dummy orig_im_size
    (1500 x 2250), so its masks are only right for images of aspect ratio 2:3; samfast's graph
    computes the crop from orig_im_size."""
    from segment_anything.utils.onnx import SamOnnxModel

    wrapper = SamOnnxModel(official_model, return_single_mask, use_stability_score, return_extra_metrics)
    pe = official_model.prompt_encoder
    size = pe.image_embedding_size
    dummy = {
        "image_embeddings": torch.randn(1, pe.embed_dim, *size),
        "point_coords": torch.randint(0, 1024, (1, 5, 2), dtype=torch.float),
        "point_labels": torch.randint(0, 4, (1, 5), dtype=torch.float),
        "mask_input": torch.randn(1, 1, *[4 * x for x in size]),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([1500, 2250], dtype=torch.float),
    }
    path = os.fspath(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, tuple(dummy.values()), path, dynamo=False, export_params=True,
                          opset_version=opset, do_constant_folding=True, input_names=list(dummy),
                          output_names=["masks", "iou_predictions", "low_res_masks"],
                          dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}})
    return path
