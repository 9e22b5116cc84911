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


def test_plain_eager_calls_skip_the_op_but_match_it(tmp_path, monkeypatch):
    """In plain no-grad eager mode the public wrappers call the kernels without the custom-op layer: same results as
    the op; with autograd on, under fake tensors or under torch.compile they go through the op."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from samfast import ops, ops_cached_decoder
    from samfast.fast_decoder import FastMaskDecoder

    _, path = make_checkpoint(tmp_path, TINY, seed=23)
    model = samfast.load("auto", path)
    fd = FastMaskDecoder(model)
    g = torch.Generator().manual_seed(1)
    c = fd.prepare(torch.randn(1, 256, 16, 16, generator=g))
    tokens = torch.randn(2, 7, 256, generator=g)
    args = (tokens, c.x0, c.pe, c.k0, c.v0, c.q0, None, None, c.packed, list(fd._dims), 16, 16, True, 1e-5, 1e-6, c.g)
    with torch.no_grad():
        assert ops._plain_eager(tokens)
        direct = ops_cached_decoder.cached_mask_decoder(tokens, c.x0, c.pe, c.k0, c.v0, c.q0, c.packed, fd._dims,
                                                        c.hw, True, g=c.g)
        via_op = torch.ops.samfast.cached_mask_decoder(*args)
        low = torch.randn(1, 3, 64, 64, generator=g)
        post = ops.postprocess_masks(low, 256, (200, 256), (300, 384), 0.0)
        post_op = torch.ops.samfast.postprocess_masks(low, 256, 200, 256, 300, 384, 0.0, True)
    assert torch.equal(direct[0], via_op[0]) and torch.equal(direct[1], via_op[1])
    assert torch.equal(post, post_op)
    assert not ops._plain_eager(tokens)  # autograd on: the op (and its checks) decide
    with FakeTensorMode() as mode, torch.no_grad():
        fake = mode.from_tensor(low)
        assert not ops._plain_eager(fake)
        out = ops.postprocess_masks(fake, 256, (200, 256), (300, 384), 0.0)  # the fake impl: no kernel call
        assert tuple(out.shape) == (1, 3, 300, 384) and out.dtype == torch.bool
