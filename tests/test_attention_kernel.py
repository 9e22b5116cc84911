"""CPU rel-pos attention kernel (`_C.rel_pos_attention_cpu`) vs the PyTorch reference.

Every SIMD path (the best one, e.g. AVX-512; AVX2+FMA; the portable baseline; via SAMFAST_SIMD), fp32 and bf16, global and
windowed blocks with padding, argument validation, non-contiguous inputs and torch.library.opcheck.
"""
import pytest
import torch

from samfast import _C, ops

# (B, H, W, num_heads, head_dim, window_size)
SHAPES = [
    (2, 9, 9, 2, 16, 4),     # windows 4x4 over 9x9 -> padded to 12x12
    (2, 13, 7, 3, 32, 5),    # non-square, padding on both axes
    (1, 8, 8, 2, 32, 4),     # windows tile the grid exactly (no padding)
    (2, 11, 6, 2, 64, 0),    # global, odd grid
    (1, 19, 17, 2, 64, 0),   # global, 323 tokens -> two key blocks (online softmax across blocks)
    (1, 20, 18, 1, 24, 17),  # window 17 (289 tokens, two key blocks), head_dim not a multiple of 16
    (1, 3, 2, 4, 8, 0),      # tiny global, head_dim 8
    (2, 3, 5, 2, 16, 7),     # window larger than the image: one mostly-padded window
]
SIMD = ["default", "avx2", "baseline"]  # default: AVX-512 where the CPU has it


def _inputs(B, H, W, nh, hd, ws, dtype=torch.float32, seed=0, qscale=1.0):
    g = torch.Generator().manual_seed(seed)
    C = nh * hd
    sh, sw = (ws, ws) if ws else (H, W)
    qkv = torch.randn(B, H, W, 3 * C, generator=g)
    qkv[..., :C] *= qscale
    bias = torch.randn(3 * C, generator=g)
    rel_h = torch.randn(sh, sh, hd, generator=g) * 0.3
    rel_w = torch.randn(sw, sw, hd, generator=g) * 0.3
    return [t.to(dtype) for t in (qkv, bias, rel_h, rel_w)]


def _rel_err(out, ref64):
    return ((out.double() - ref64).abs().max() / ref64.abs().max()).item()


def _ref64(args, nh, ws):
    return ops.rel_pos_attention_reference(*[t.double() for t in args], nh, ws)


def test_kernel_is_registered():
    assert hasattr(_C, "rel_pos_attention_cpu")
    assert ops.use_kernel("rel_pos_attention", torch.zeros(1))
    assert "rel_pos_attention" in _C.build_info()["op_groups"]


@pytest.mark.parametrize("simd", SIMD)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fp32_matches_reference(monkeypatch, simd, shape):
    monkeypatch.setenv("SAMFAST_SIMD", simd)
    B, H, W, nh, hd, ws = shape
    args = _inputs(*shape)
    out = ops.rel_pos_attention(*args, nh, ws)
    assert out.shape == (B, H, W, nh * hd) and out.dtype == torch.float32
    assert _rel_err(out, _ref64(args, nh, ws)) < 1e-5


@pytest.mark.parametrize("simd", SIMD)
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[1], SHAPES[4], SHAPES[5]], ids=lambda s: "x".join(map(str, s)))
def test_bf16_within_reference_error(monkeypatch, simd, shape):
    monkeypatch.setenv("SAMFAST_SIMD", simd)
    B, H, W, nh, hd, ws = shape
    args = _inputs(*shape, dtype=torch.bfloat16)
    out = ops.rel_pos_attention(*args, nh, ws)
    assert out.dtype == torch.bfloat16 and out.shape == (B, H, W, nh * hd)
    ref64 = _ref64(args, nh, ws)
    err_ref = _rel_err(ops.rel_pos_attention_reference(*args, nh, ws), ref64)
    err = _rel_err(out, ref64)
    # fp32 math + one final bf16 rounding: no worse than the bf16 reference (flash-attention style)
    assert err <= 2 * err_ref + 1e-3, (err, err_ref)
    assert err < 1e-2


@pytest.mark.parametrize("simd", SIMD)
def test_large_logits_online_softmax(monkeypatch, simd):
    """Large, shifting score ranges across key blocks exercise the running-max rescaling."""
    monkeypatch.setenv("SAMFAST_SIMD", simd)
    shape = (1, 24, 24, 1, 32, 0)  # 576 tokens -> 3 key blocks
    args = _inputs(*shape, qscale=8.0, seed=3)
    out = ops.rel_pos_attention(*args, 1, 0)
    assert torch.isfinite(out).all()
    assert _rel_err(out, _ref64(args, 1, 0)) < 1e-5


def test_simd_paths_agree(monkeypatch):
    args = _inputs(1, 13, 7, 3, 32, 5, seed=5)
    outs = []
    for simd in SIMD:
        monkeypatch.setenv("SAMFAST_SIMD", simd)
        outs.append(ops.rel_pos_attention(*args, 3, 5))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_padded_tokens_take_qkv_bias():
    """The bias must matter exactly where windows are padded (and only there)."""
    args = _inputs(1, 5, 5, 1, 16, 4, seed=7)
    out_a = ops.rel_pos_attention(*args, 1, 4)
    args_b = list(args)
    args_b[1] = args[1] + 1.0
    out_b = ops.rel_pos_attention(*args_b, 1, 4)
    assert not torch.allclose(out_a[:, 4:, :], out_b[:, 4:, :])  # last window row/col sees padding
    torch.testing.assert_close(out_a[:, :4, :4], out_b[:, :4, :4], rtol=0, atol=0)  # full window


def test_non_contiguous_inputs():
    B, H, W, nh, hd, ws = 2, 9, 9, 2, 16, 4
    qkv, bias, rel_h, rel_w = _inputs(B, H, W, nh, hd, ws)
    qkv_nc = qkv.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3)  # same values, transposed strides
    bias_nc = torch.stack([bias, bias], 1)[:, 0]
    rel_h_nc = rel_h.transpose(0, 1).contiguous().transpose(0, 1)
    assert not qkv_nc.is_contiguous() and not bias_nc.is_contiguous() and not rel_h_nc.is_contiguous()
    out = ops.rel_pos_attention(qkv_nc, bias_nc, rel_h_nc, rel_w, nh, ws)
    torch.testing.assert_close(out, ops.rel_pos_attention(qkv, bias, rel_h, rel_w, nh, ws), rtol=0, atol=0)
    # the C++ side itself refuses non-contiguous refs
    outbuf = torch.empty(B, H, W, nh * hd)
    refs = [ops.tensor_ref(t) for t in (qkv_nc, bias, rel_h, rel_w, outbuf)]
    with pytest.raises(ValueError, match="qkv: must be contiguous"):
        _C.rel_pos_attention_cpu(*refs, nh, ws)


def test_errors_through_ops():
    qkv, bias, rel_h, rel_w = _inputs(1, 9, 9, 2, 16, 4)
    with pytest.raises(ValueError, match="qkv"):
        ops.rel_pos_attention(qkv[0], bias, rel_h, rel_w, 2, 4)
    with pytest.raises(ValueError, match="3 \\* num_heads"):
        ops.rel_pos_attention(qkv, bias, rel_h, rel_w, 5, 4)
    with pytest.raises(ValueError, match="rel_h"):
        ops.rel_pos_attention(qkv, bias, rel_h[:3], rel_w, 2, 4)
    with pytest.raises(ValueError, match="rel_w"):
        ops.rel_pos_attention(qkv, bias, rel_h, rel_w[:, :3], 2, 4)
    with pytest.raises(ValueError, match="qkv_bias"):
        ops.rel_pos_attention(qkv, bias[:-1], rel_h, rel_w, 2, 4)
    with pytest.raises(TypeError, match="rel_w"):
        ops.rel_pos_attention(qkv, bias, rel_h, rel_w.double(), 2, 4)
    # a consistent dtype the CPU kernel does not take (float16) runs the PyTorch reference instead
    half = [t.half() for t in (qkv, bias, rel_h, rel_w)]
    out = ops.rel_pos_attention(*half, 2, 4)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, ops.rel_pos_attention_reference(*half, 2, 4))
    with pytest.raises(TypeError, match="qkv: expected dtype"):  # the C++ side rejects it itself
        _C.rel_pos_attention_cpu(*[ops.tensor_ref(t) for t in half],
                                         ops.tensor_ref(torch.empty(qkv.shape[:3] + (qkv.shape[3] // 3,),
                                                                    dtype=torch.float16)), 2, 4)


def test_errors_direct_c():
    B, H, W, nh, hd, ws = 1, 9, 9, 2, 16, 4
    qkv, bias, rel_h, rel_w = _inputs(B, H, W, nh, hd, ws)
    out = torch.empty(B, H, W, nh * hd)
    R = ops.tensor_ref
    ok = [R(t) for t in (qkv, bias, rel_h, rel_w, out)]
    _C.rel_pos_attention_cpu(*ok, nh, ws)  # sanity: valid call works
    torch.testing.assert_close(out, ops.rel_pos_attention_reference(qkv, bias, rel_h, rel_w, nh, ws),
                               rtol=1e-5, atol=1e-5)

    def call(i, ref, heads=nh, window=ws):
        refs = list(ok)
        if ref is not None:
            refs[i] = ref
        _C.rel_pos_attention_cpu(*refs, heads, window)

    with pytest.raises(ValueError, match="out: expected shape"):
        call(4, R(torch.empty(B, H, W, nh * hd + 1)))
    with pytest.raises(ValueError, match="rel_h: expected shape"):
        call(2, R(torch.empty(ws, ws, hd + 1)))
    with pytest.raises(ValueError, match="rel_w: expected shape"):
        call(3, R(torch.empty(ws + 1, ws, hd)))
    with pytest.raises(ValueError, match="qkv_bias: expected shape"):
        call(1, R(torch.empty(3 * nh * hd + 3)))
    with pytest.raises(ValueError, match="qkv: expected shape"):
        call(0, R(torch.empty(H, W, 3 * nh * hd)))
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        call(4, R(torch.empty(B, H, W, nh * hd, dtype=torch.bfloat16)))
    with pytest.raises(TypeError, match="qkv: expected dtype"):
        call(0, R(qkv.double()))
    with pytest.raises(ValueError, match="num_heads"):
        call(0, None, heads=0)
    with pytest.raises(ValueError, match="num_heads"):
        call(0, None, heads=5)
    with pytest.raises(ValueError, match="window_size"):
        call(0, None, window=-1)
    with pytest.raises(ValueError, match="rel_h: expected shape"):
        call(0, None, window=3)
    with pytest.raises(ValueError, match="CPU"):
        call(1, _C.TensorRef(bias.data_ptr(), list(bias.shape), list(bias.stride()), "float32", 0))
    with pytest.raises(ValueError, match="out: must be contiguous"):
        call(4, _C.TensorRef(out.data_ptr(), list(out.shape), [1, 1, 1, 1], "float32", -1))


@pytest.mark.parametrize("shape", [(1, 5, 6, 2, 16, 4), (2, 4, 3, 1, 8, 0)], ids=["window", "global"])
def test_opcheck(shape):
    B, H, W, nh, hd, ws = shape
    args = _inputs(*shape)
    torch.library.opcheck(ops._rel_pos_attention_op, (*args, nh, ws))
