"""The custom ops have fake implementations: the encoder and decoder trace under torch.compile."""
import torch

import samfast
from sam_testing import TINY, make_checkpoint, rel_err


def test_encoder_and_ops_trace_with_fake_impls(tmp_path):
    _, path = make_checkpoint(tmp_path, TINY, seed=21)
    model = samfast.load("auto", path)
    x = torch.randn(1, 3, TINY.image_size, TINY.image_size)
    with torch.no_grad():
        eager = model.image_encoder(x)
        compiled = torch.compile(model.image_encoder, backend="aot_eager", fullgraph=True)
        out = compiled(x)
    assert rel_err(out, eager) < 1e-5


def test_ops_registered_under_samfast_namespace():
    for name in ("rel_pos_attention", "mask_head", "postprocess_masks"):
        assert hasattr(torch.ops.samfast, name), name
