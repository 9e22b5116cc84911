"""OnnxPredictor: SamPredictor's API over exported ONNX graphs, with onnxruntime + numpy + PIL only.

This module imports neither torch nor onnx (only onnxruntime, numpy, PIL), so it runs in a slim
deployment image: `pip install onnxruntime numpy pillow` (or `onnxruntime-gpu` for the CUDA and
TensorRT execution providers). Note that `import samfast.onnx.predictor` through the `samfast`
package still runs `samfast/__init__.py`, which imports torch; without torch installed, load this
file on its own (it has no samfast-internal imports).

Graphs: an encoder from `samfast.export_onnx(model, path, part="encoder")` (float [1, 3, S, S]
input; pre-processing is done here with PIL exactly as SamPredictor does) or with
`preprocess=True` (uint8 [H, W, 3] input; the graph resizes without antialias, so embeddings
approximate SamPredictor's), and a decoder with the official `SamOnnxModel` contract, from
`samfast.export_onnx` or from segment-anything's own exporter.

multimask_output: a decoder exported with return_single_mask=False (recommended, the default of
`samfast.export_onnx`) returns all 4 mask tokens; `predict` then slices tokens 1..3
(multimask_output=True) or token 0 (False), exactly like SamPredictor. A decoder exported with
return_single_mask=True picks one mask in-graph (official rule: token 0 when the prompt has more
than 2 points counting the padding point / box corners, else the best of tokens 1..3); `predict`
returns that single mask whatever multimask_output says.

Caveat for official graphs: segment-anything 1.0's exporter (the PyPI release) bakes the crop to
the pre-padded size in as a constant from its dummy input (1500x2250, issue #56), so its decoder
is only right for 2:3 images; graphs from `samfast.export_onnx` follow `orig_im_size`.

Providers: default TensorRT > CUDA > CPU, as available. TensorRT builds an engine per new input
shape (slow first calls); pass providers=["CUDAExecutionProvider", "CPUExecutionProvider"] to skip it.
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

__all__ = ["OnnxPredictor", "default_providers", "check_feeds"]

DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input",
                  "orig_im_size")
_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
    "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}
_DEFAULT_MEAN = (123.675, 116.28, 103.53)
_DEFAULT_STD = (58.395, 57.12, 57.375)


def default_providers() -> list:
    """TensorRT, CUDA (from onnxruntime-gpu) when available, then CPU."""
    import onnxruntime as ort

    avail = ort.get_available_providers()
    pref = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]
    return pref or list(avail)


def _session(path, providers, num_threads):
    import onnxruntime as ort

    if not os.path.isfile(os.fspath(path)):
        raise FileNotFoundError(f"ONNX model not found: {os.fspath(path)!r}")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads is not None:
        if int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        so.intra_op_num_threads = int(num_threads)
    return ort.InferenceSession(os.fspath(path), sess_options=so,
                                providers=list(providers) if providers is not None else default_providers())


def check_feeds(inputs: Sequence, feeds: Mapping[str, np.ndarray], graph: str = "model") -> None:
    """Validate `feeds` against a session's `get_inputs()`: names, numpy type, dtype, rank and
    static dimensions. Raises ValueError / TypeError naming the offending input."""
    expected = {i.name: i for i in inputs}
    missing = [n for n in expected if n not in feeds]
    unknown = [n for n in feeds if n not in expected]
    if missing or unknown:
        raise ValueError(f"{graph}: inputs {sorted(expected)} expected; missing {missing}, unknown {unknown}")
    for name, arg in expected.items():
        x = feeds[name]
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{graph} input {name!r}: expected a numpy array, got {type(x).__name__}")
        want = _ORT_DTYPES.get(arg.type)
        if want is not None and x.dtype != want:
            raise TypeError(f"{graph} input {name!r}: expected dtype {np.dtype(want).name}, got {x.dtype}")
        if len(arg.shape) != x.ndim:
            raise ValueError(f"{graph} input {name!r}: expected rank {len(arg.shape)} (shape {list(arg.shape)}), "
                             f"got shape {list(x.shape)}")
        for i, (d, n) in enumerate(zip(arg.shape, x.shape)):
            if isinstance(d, int) and d != n:
                raise ValueError(f"{graph} input {name!r}: dim {i} must be {d} (shape {list(arg.shape)}), "
                                 f"got shape {list(x.shape)}")


def _as_array(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected a numeric array, got {type(x).__name__}") from e
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def preprocess_shape(h: int, w: int, long_side: int) -> Tuple[int, int]:
    """(H', W') with the longest side == long_side, rounded half up (as ResizeLongestSide)."""
    scale = long_side * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


class OnnxPredictor:
    """SamPredictor over ONNX graphs: `set_image` once, then `predict` per prompt.

    encoder_path, decoder_path: .onnx files (see module docstring).
    providers: onnxruntime execution providers; default TensorRT / CUDA when onnxruntime-gpu offers
      them, else CPU. num_threads: intra-op threads (default: onnxruntime's choice).
    """

    def __init__(self, encoder_path: Union[str, os.PathLike], decoder_path: Union[str, os.PathLike],
                 providers: Optional[Sequence] = None, num_threads: Optional[int] = None) -> None:
        self.encoder = _session(encoder_path, providers, num_threads)
        self.decoder = _session(decoder_path, providers, num_threads)
        self._enc_in = self.encoder.get_inputs()
        self._dec_in = self.decoder.get_inputs()
        names = {i.name for i in self._dec_in}
        if names != set(DECODER_INPUTS):
            raise ValueError(f"decoder {os.fspath(decoder_path)!r}: inputs {sorted(names)} are not the SAM decoder "
                             f"contract {list(DECODER_INPUTS)}")
        if len(self._enc_in) != 1:
            raise ValueError(f"encoder {os.fspath(encoder_path)!r}: expected one input, got "
                             f"{[i.name for i in self._enc_in]}")
        enc = self._enc_in[0]
        self._in_graph_preprocess = len(enc.shape) == 3
        meta = {**self.decoder.get_modelmeta().custom_metadata_map, **self.encoder.get_modelmeta().custom_metadata_map}
        dec = {i.name: i for i in self._dec_in}
        mh, mw = dec["mask_input"].shape[2:]
        eh = dec["image_embeddings"].shape[2]
        if not all(isinstance(v, int) for v in (mh, mw, eh)):
            raise ValueError("decoder: mask_input and image_embeddings need static spatial dims")
        self.mask_input_size = (mh, mw)
        if "samfast.img_size" in meta:
            self.img_size = int(meta["samfast.img_size"])
        elif not self._in_graph_preprocess and isinstance(enc.shape[-1], int):
            self.img_size = int(enc.shape[-1])
        else:
            self.img_size = 16 * eh  # SAM's patch size
        self.mask_threshold = float(meta.get("samfast.mask_threshold", 0.0))
        self.pixel_mean = np.array([float(v) for v in meta["samfast.pixel_mean"].split(",")]
                                   if "samfast.pixel_mean" in meta else _DEFAULT_MEAN, np.float32).reshape(3, 1, 1)
        self.pixel_std = np.array([float(v) for v in meta["samfast.pixel_std"].split(",")]
                                  if "samfast.pixel_std" in meta else _DEFAULT_STD, np.float32).reshape(3, 1, 1)
        self._out_names = [o.name for o in self.decoder.get_outputs()]
        self.reset_image()

    # ------------------------------------------------------------------ raw graph calls (validated)

    def run_encoder(self, image: np.ndarray) -> np.ndarray:
        """Run the encoder graph on its raw input ([1,3,S,S] float32 or [H,W,3] uint8) -> embedding."""
        feeds = {self._enc_in[0].name: image}
        check_feeds(self._enc_in, feeds, "encoder")
        return self.encoder.run(None, feeds)[0]

    def run_decoder(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run the decoder graph on official-contract feeds -> {output name: array}."""
        check_feeds(self._dec_in, feeds, "decoder")
        return dict(zip(self._out_names, self.decoder.run(None, dict(feeds))))

    # ------------------------------------------------------------------ image

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """image: HxWx3 uint8 array (RGB, or BGR with image_format="BGR")."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        if not isinstance(image, np.ndarray):
            raise TypeError(f"image: expected a HxWx3 uint8 numpy array, got {type(image).__name__}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image: expected shape HxWx3 (uint8 {image_format}), got {image.shape}")
        if image.dtype != np.uint8:
            raise TypeError(f"image: expected dtype uint8 (values 0..255), got {image.dtype}")
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"image: empty image of shape {image.shape}")
        if image_format == "BGR":
            image = image[..., ::-1]
        self.reset_image()
        h, w = image.shape[:2]
        s = self.img_size
        nh, nw = preprocess_shape(h, w, s)
        if self._in_graph_preprocess:
            feed = np.ascontiguousarray(image)
        else:
            resized = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((nw, nh), Image.BILINEAR))
            x = (resized.transpose(2, 0, 1).astype(np.float32) - self.pixel_mean) / self.pixel_std
            feed = np.zeros((1, 3, s, s), np.float32)
            feed[0, :, :nh, :nw] = x
        self.features = self.run_encoder(feed)
        self.original_size = (int(h), int(w))
        self.input_size = (nh, nw)
        self.is_image_set = True

    def get_image_embedding(self) -> np.ndarray:
        """[1, 256, h, w] float32 image embedding (h = w = 64 for SAM)."""
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) to generate an embedding.")
        return self.features

    def reset_image(self) -> None:
        self.is_image_set = False
        self.features = None
        self.original_size = None
        self.input_size = None

    # ------------------------------------------------------------------ prompts

    def _apply_coords(self, coords: np.ndarray) -> np.ndarray:
        oh, ow = self.original_size
        nh, nw = self.input_size
        coords = coords.astype(np.float64).copy()
        coords[..., 0] *= nw / ow
        coords[..., 1] *= nh / oh
        return coords

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
        box 4 (XYXY), mask_input 1x256x256 logits (1x(4h)x(4w)). Returns (masks CxHxW bool (float32
        logits with return_logits), iou C, low_res Cx256x256), C = 3 if multimask_output else 1."""
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        coords = [np.zeros((0, 2))]
        labels = [np.zeros((0,))]
        if point_coords is not None or point_labels is not None:
            if point_coords is None or point_labels is None:
                raise ValueError("point_coords and point_labels must be given together")
            pc, pl = _as_array(point_coords, "point_coords"), _as_array(point_labels, "point_labels")
            if pc.ndim != 2 or pc.shape[1] != 2:
                raise ValueError(f"point_coords: expected shape Nx2 (x, y), got {pc.shape}")
            if pl.shape != (pc.shape[0],):
                raise ValueError(f"point_labels: expected shape ({pc.shape[0]},) to match point_coords, got {pl.shape}")
            coords.append(self._apply_coords(pc))
            labels.append(pl)
        if box is not None:
            b = _as_array(box, "box")
            if b.size != 4:
                raise ValueError(f"box: expected 4 values (x0, y0, x1, y1), got shape {b.shape}")
            coords.append(self._apply_coords(b.reshape(2, 2)))
            labels.append(np.array([2.0, 3.0]))
        elif point_coords is not None:  # padding point, as the prompt encoder adds without a box
            coords.append(np.zeros((1, 2)))
            labels.append(np.array([-1.0]))
        if mask_input is not None:
            m = _as_array(mask_input, "mask_input").astype(np.float32)
            if m.shape != (1, *self.mask_input_size):
                raise ValueError(f"mask_input: expected shape 1x{self.mask_input_size[0]}x{self.mask_input_size[1]} "
                                 f"(low-res logits), got {m.shape}")
            mask, has_mask = m[None], np.ones(1, np.float32)
        else:
            mask, has_mask = np.zeros((1, 1, *self.mask_input_size), np.float32), np.zeros(1, np.float32)
        feeds = {
            "image_embeddings": self.features,
            "point_coords": np.concatenate(coords, 0)[None].astype(np.float32),
            "point_labels": np.concatenate(labels, 0)[None].astype(np.float32),
            "mask_input": mask,
            "has_mask_input": has_mask,
            "orig_im_size": np.array(self.original_size, np.float32),
        }
        outs = list(self.run_decoder(feeds).values())
        masks, iou, low_res = outs[0], outs[1], outs[-1]
        if masks.shape[1] > 1:  # all mask tokens (return_single_mask=False): slice like SamPredictor
            sl = slice(1, None) if multimask_output else slice(0, 1)
            masks, iou, low_res = masks[:, sl], iou[:, sl], low_res[:, sl]
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks[0], iou[0], low_res[0]
