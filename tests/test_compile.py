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
    for name in ("rel_pos_attention", "mask_head", "postprocess_masks", "cached_mask_decoder"):
        assert hasattr(torch.ops.samfast, name), name


def test_whole_decoder_op_under_compile(tmp_path):
    """ops.cached_mask_decoder (the C++ whole-decoder op) traces with its fake impl and gives the eager result."""
    from samfast.fast_decoder import FastMaskDecoder

    _, path = make_checkpoint(tmp_path, TINY, seed=22)
    model = samfast.load("auto", path)
    fd = FastMaskDecoder(model)
    g = torch.Generator().manual_seed(0)
    c = fd.prepare(torch.randn(1, 256, 16, 16, generator=g))
    assert c.packed is not None
    tokens = torch.randn(2, 7, 256, generator=g)

    def run(tok):
        return samfast.ops.cached_mask_decoder(tok, c.x0, c.pe, c.k0, c.v0, c.q0, c.packed, fd._dims, c.hw, True)

    with torch.no_grad():
        eager = run(tokens)
        compiled = torch.compile(run, backend="aot_eager", fullgraph=True)(tokens)
    assert rel_err(compiled[0], eager[0]) < 1e-6 and rel_err(compiled[1], eager[1]) < 1e-6
