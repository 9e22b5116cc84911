"""The Sam module: image encoder + prompt encoder + mask decoder, with pre/post-processing."""
from typing import Any, Dict, List, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .. import ops
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder


class Sam(nn.Module):
    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(
        self,
        image_encoder: ImageEncoderViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: List[float] = [123.675, 116.28, 103.53],
        pixel_std: List[float] = [58.395, 57.12, 57.375],
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.Tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.Tensor(pixel_std).view(-1, 1, 1), False)

    @property
    def device(self) -> Any:
        return self.pixel_mean.device

    @property
    def dtype(self) -> torch.dtype:
        """The mask decoder's dtype (the image encoder's may differ: see samfast.load's decoder_dtype)."""
        return self.mask_decoder.iou_token.weight.dtype

    @torch.no_grad()
    def forward(self, batched_input: List[Dict[str, Any]], multimask_output: bool) -> List[Dict[str, torch.Tensor]]:
        """Same contract as segment_anything's `Sam.forward` (list of per-image dicts)."""
        input_images = torch.stack([self.preprocess(x["image"]) for x in batched_input], dim=0)
        enc_dtype = self.image_encoder.patch_embed.proj.weight.dtype  # may differ from the decoder's
        image_embeddings = self.image_encoder(input_images.to(enc_dtype)).float()
        outputs = []
        for record, emb in zip(batched_input, image_embeddings):
            points = (record["point_coords"], record["point_labels"]) if "point_coords" in record else None
            sparse, dense = self.prompt_encoder(points=points, boxes=record.get("boxes"),
                                                masks=record.get("mask_inputs"))
            low_res, iou = self.mask_decoder(
                image_embeddings=emb.unsqueeze(0).to(self.dtype),
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
            low_res, iou = low_res.float(), iou.float()
            masks = self.postprocess_masks(low_res, record["image"].shape[-2:], record["original_size"])
            outputs.append({"masks": masks > self.mask_threshold, "iou_predictions": iou, "low_res_logits": low_res})
        return outputs

    def postprocess_masks(self, masks: torch.Tensor, input_size: Tuple[int, ...],
                          original_size: Tuple[int, ...]) -> torch.Tensor:
        """BxCx256x256 low-res logits -> BxCxHxW logits at the original image size."""
        return ops.postprocess_masks(masks, self.image_encoder.img_size, input_size, original_size)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise pixel values and pad to a square input (3xHxW or Bx3xHxW)."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.image_encoder.img_size - w, 0, self.image_encoder.img_size - h))
