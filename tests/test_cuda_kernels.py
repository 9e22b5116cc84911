"""CUDA kernels (_C.*_cuda) vs the PyTorch references (float64 on the same GPU) and vs the CPU ops.

Every test needs a GPU and a CUDA build of samfast._C; without either they are skipped with the reason,
never passed. Errors are norm-relative: ||out - ref64|| / ||ref64||. fp32 kernels must land under 1e-4;
fp16 / bf16 kernels within a small multiple of the error of the same-dtype PyTorch reference.
"""
import math
import os

import pytest
import torch

import samfast.ops as ops
from samfast import _C

_HAS_GPU = torch.cuda.is_available()
_HAS_CUDA_BUILD = bool(getattr(_C, "cuda_compiled", lambda: False)())
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not _HAS_GPU, reason="no CUDA GPU visible to torch"),
    pytest.mark.skipif(not _HAS_CUDA_BUILD, reason="samfast._C was built without CUDA (cuda_compiled() is False)"),
]

DEV = "cuda"
LOW = [torch.bfloat16, torch.float16]
# SAMFAST_CUDA_TEST_QUICK=1 drops the full-size (SAM) cases: for runs under compute-sanitizer.
QUICK = os.environ.get("SAMFAST_CUDA_TEST_QUICK") == "1"


def rel(out, ref):
    out, ref = out.double(), ref.double()
    assert torch.isfinite(out).all(), "non-finite values in the output"
    return float((out - ref).norm() / ref.norm().clamp_min(1e-30))


def check_low(out, ref_same_dtype, ref64, factor=3.0):
    """Kernel error (vs float64) within `factor` x the same-dtype PyTorch reference's error (+ 1e-4)."""
    e_k, e_r = rel(out, ref64), rel(ref_same_dtype, ref64)
    assert e_k <= factor * e_r + 1e-4, f"kernel err {e_k:.3g} vs same-dtype reference err {e_r:.3g}"


def gen(seed):
    return torch.Generator(device=DEV).manual_seed(seed)


def randn(g, *shape, scale=1.0):
    return torch.randn(*shape, generator=g, device=DEV, dtype=torch.float64) * scale


def refs(*ts):
    return [ops.tensor_ref(t) for t in ts]


def stream():
    return torch.cuda.current_stream().cuda_stream


def guarded_empty(shape, dtype, pad=64, fill=float("nan")):
    """An output view inside a larger poisoned buffer: returns (out, buf, pad) to check both."""
    n = math.prod(shape)
    buf = torch.full((n + 2 * pad,), fill, dtype=dtype, device=DEV)
    return buf[pad:pad + n].view(shape), buf, pad


def assert_guards(buf, pad):
    head, tail = buf[:pad], buf[-pad:]
    assert torch.isnan(head).all() and torch.isnan(tail).all(), "kernel wrote outside its output"


# ------------------------------------------------------------------------------------------------
# rel-pos attention
# ------------------------------------------------------------------------------------------------

# (B, H, W, heads, hd, window_size)
ATTN_SMALL = [
    (2, 9, 9, 2, 64, 4),     # padded windows (9 -> 12), bias tokens in the softmax
    (1, 13, 7, 2, 80, 5),    # rectangular grid, uneven padding
    (1, 13, 7, 2, 80, 0),    # global 13 x 7
    (1, 11, 6, 3, 64, 0),    # global 11 x 6: N = 66 (partial query / key tiles)
    (3, 5, 5, 1, 64, 8),     # window larger than the grid
    (1, 7, 9, 2, 32, 3),     # hd 32: SIMT for every dtype
    (1, 6, 5, 2, 48, 0),     # hd 48 (not a multiple of 32)
    (1, 4, 6, 1, 128, 0),    # hd 128 (SIMT max)
    (1, 3, 3, 2, 80, 1),     # 1 x 1 windows
]
ATTN_SAM = [
    (1, 64, 64, 2, 64, 14),  # vit_b / vit_l windowed
    (1, 64, 64, 2, 80, 14),  # vit_h windowed
    (1, 64, 64, 2, 64, 0),   # global
    (1, 64, 64, 2, 80, 0),
]
if QUICK:
    ATTN_SAM = ATTN_SAM[:2]  # windowed only: the global 4096-token cases are slow under the sanitizers


def attn_inputs(B, H, W, heads, hd, ws, seed=0):
    g = gen(seed)
    C = heads * hd
    S = (ws, ws) if ws > 0 else (H, W)
    qkv = randn(g, B, H, W, 3 * C)
    bias = randn(g, 3 * C)
    rel_h = randn(g, S[0], S[0], hd, scale=0.1)
    rel_w = randn(g, S[1], S[1], hd, scale=0.1)
    return qkv, bias, rel_h, rel_w


def attn_cuda(args, dtype, heads, ws):
    qkv, bias, rh, rw = (t.to(dtype) for t in args)
    B, H, W, C3 = qkv.shape
    out, buf, pad = guarded_empty((B, H, W, C3 // 3), dtype)
    _C.rel_pos_attention_cuda(*refs(qkv, bias, rh, rw, out), heads, ws, stream())
    torch.cuda.synchronize()
    assert_guards(buf, pad)
    assert not torch.isnan(out).any(), "some output elements were never written"
    return out


@pytest.mark.parametrize("cfg", ATTN_SMALL + ATTN_SAM, ids=str)
def test_attention_fp32(cfg):
    B, H, W, heads, hd, ws = cfg
    args = attn_inputs(*cfg)
    ref64 = ops.rel_pos_attention_reference(*args, heads, ws)
    out = attn_cuda(args, torch.float32, heads, ws)
    assert rel(out, ref64) < 1e-4
    # the public op (custom_op path) on CUDA, and the CPU op on the same float32 inputs
    f32 = [t.float() for t in args]
    assert rel(ops.rel_pos_attention(*f32, heads, ws), ref64) < 1e-4
    if H * W <= 1024:
        cpu = ops.rel_pos_attention(*[t.cpu() for t in f32], heads, ws)
        assert rel(out.cpu(), cpu) < 1e-4


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("cfg", ATTN_SMALL + ATTN_SAM, ids=str)
def test_attention_low_precision(cfg, dtype):
    B, H, W, heads, hd, ws = cfg
    args = attn_inputs(*cfg, seed=1)
    low = [t.to(dtype) for t in args]
    ref64 = ops.rel_pos_attention_reference(*[t.double() for t in low], heads, ws)  # exact math, same inputs
    ref_low = ops.rel_pos_attention_reference(*low, heads, ws)
    out = attn_cuda(args, dtype, heads, ws)
    check_low(out, ref_low, ref64)
    if H * W <= 1024:
        cpu = ops.rel_pos_attention(*[t.cpu() for t in low], heads, ws)
        check_low(out.cpu(), cpu, ref64.cpu(), factor=4.0)


@pytest.mark.parametrize("hd", [64, 80])
@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_attention_uses_tensor_cores(hd, dtype):
    if torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("mma.sync m16n8k16 path needs sm_80+")
    qkv, bias, rh, rw = (t.to(dtype) for t in attn_inputs(1, 64, 64, 2, hd, 14))
    out = torch.empty(1, 64, 64, 2 * hd, dtype=dtype, device=DEV)
    assert _C.rel_pos_attention_cuda_path(*refs(qkv, bias, rh, rw, out), 2, 14) == "mma"
    assert _C.rel_pos_attention_cuda_path(*refs(qkv.float(), bias.float(), rh.float(), rw.float(), out.float()),
                                          2, 14) == "simt"


def test_attention_misaligned_falls_back():
    """A qkv view starting 2 bytes into its storage is not 16-byte aligned: SIMT path, same result."""
    args = attn_inputs(1, 9, 9, 2, 64, 4, seed=3)
    qkv, bias, rh, rw = (t.to(torch.bfloat16) for t in args)
    base = torch.empty(qkv.numel() + 1, dtype=torch.bfloat16, device=DEV)
    qkv_mis = base[1:].view(qkv.shape)
    qkv_mis.copy_(qkv)
    out = torch.full((1, 9, 9, 128), float("nan"), dtype=torch.bfloat16, device=DEV)
    assert _C.rel_pos_attention_cuda_path(*refs(qkv_mis, bias, rh, rw, out), 2, 4) == "simt"
    _C.rel_pos_attention_cuda(*refs(qkv_mis, bias, rh, rw, out), 2, 4, stream())
    torch.cuda.synchronize()
    ref64 = ops.rel_pos_attention_reference(*[t.double() for t in (qkv, bias, rh, rw)], 2, 4)
    check_low(out, ops.rel_pos_attention_reference(qkv, bias, rh, rw, 2, 4), ref64)


def test_attention_bad_inputs():
    qkv, bias, rh, rw = (t.float() for t in attn_inputs(1, 8, 8, 2, 64, 4))
    out = torch.empty(1, 8, 8, 128, device=DEV)
    s = stream()
    with pytest.raises(TypeError, match="out"):
        _C.rel_pos_attention_cuda(*refs(qkv, bias, rh, rw, out.half()), 2, 4, s)
    with pytest.raises(ValueError, match="rel_h"):
        _C.rel_pos_attention_cuda(*refs(qkv, bias, rh[:3], rw, out), 2, 4, s)
    with pytest.raises(ValueError, match="num_heads"):
        _C.rel_pos_attention_cuda(*refs(qkv, bias, rh, rw, out), 5, 4, s)
    with pytest.raises(ValueError, match="qkv_bias"):
        _C.rel_pos_attention_cuda(*refs(qkv, bias.cpu(), rh, rw, out), 2, 4, s)
    with pytest.raises(ValueError, match="contiguous"):
        _C.rel_pos_attention_cuda(*refs(qkv.transpose(1, 2), bias, rh, rw, out), 2, 4, s)
    with pytest.raises(ValueError, match="window_size"):
        _C.rel_pos_attention_cuda(*refs(qkv, bias, rh, rw, out), 2, -1, s)
    big = torch.zeros(1, 2, 2, 3 * 2 * 160, device=DEV)  # hd 160 > 128 in fp32
    with pytest.raises(RuntimeError, match="head_dim"):
        _C.rel_pos_attention_cuda(*refs(big, torch.zeros(960, device=DEV), torch.zeros(2, 2, 160, device=DEV),
                                        torch.zeros(2, 2, 160, device=DEV), torch.zeros(1, 2, 2, 320, device=DEV)),
                                  2, 0, s)


# ------------------------------------------------------------------------------------------------
# mask head + hypernetwork MLPs
# ------------------------------------------------------------------------------------------------

# (B, h, w, C, M)
MH_SHAPES = [(1, 5, 7, 256, 1), (2, 3, 9, 256, 3), (3, 4, 4, 24, 2), (2, 1, 17, 40, 5)] + (
    [] if QUICK else [(1, 64, 64, 256, 4)])


def mh_inputs(B, h, w, C, M, seed=0):
    g = gen(seed)
    C1, C2 = 64, 32
    return [randn(g, B, h, w, C), randn(g, C, C1, 2, 2, scale=C ** -0.5), randn(g, C1, scale=0.5),
            randn(g, C1, scale=0.3) + 1.0, randn(g, C1, scale=0.3), randn(g, C1, C2, 2, 2, scale=C1 ** -0.5),
            randn(g, C2, scale=0.5), randn(g, B, M, C2, scale=0.5)]


def mh_cuda(args, dtype):
    a = [t.to(dtype) for t in args]
    B, h, w, _ = a[0].shape
    out, buf, pad = guarded_empty((B, a[7].shape[1], 4 * h, 4 * w), dtype)
    _C.mask_head_cuda(*refs(*a, out), stream())
    torch.cuda.synchronize()
    assert_guards(buf, pad)
    assert not torch.isnan(out).any(), "some output elements were never written"
    return out


@pytest.mark.parametrize("shape", MH_SHAPES, ids=str)
def test_mask_head_fp32(shape):
    args = mh_inputs(*shape)
    ref64 = ops.mask_head_reference(*args)
    out = mh_cuda(args, torch.float32)
    assert rel(out, ref64) < 1e-4
    assert rel(ops.mask_head(*[t.float() for t in args]), ref64) < 1e-4
    cpu = ops.mask_head(*[t.float().cpu() for t in args])
    assert rel(out.cpu(), cpu) < 1e-4


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("shape", MH_SHAPES, ids=str)
def test_mask_head_low_precision(shape, dtype):
    low = [t.to(dtype) for t in mh_inputs(*shape, seed=1)]
    ref64 = ops.mask_head_reference(*[t.double() for t in low])
    out = mh_cuda(low, dtype)
    check_low(out, ops.mask_head_reference(*low), ref64)


def test_mask_head_bad_inputs():
    args = [t.float() for t in mh_inputs(1, 4, 4, 256, 2)]
    out = torch.empty(1, 2, 16, 16, device=DEV)
    s = stream()
    with pytest.raises(ValueError, match="out"):
        _C.mask_head_cuda(*refs(*args, out[:, :, :8]), s)
    with pytest.raises(TypeError, match="hyper_in"):
        _C.mask_head_cuda(*refs(*args[:7], args[7].half(), out), s)
    with pytest.raises(ValueError, match="w1"):  # C1 != 64: the CUDA kernel is specialised to SAM's sizes
        _C.mask_head_cuda(*refs(args[0], args[1][:, :32].contiguous(), *args[2:], out), s)
    with pytest.raises(ValueError, match="src"):
        _C.mask_head_cuda(*refs(args[0].cpu(), *args[1:], out), s)


# (B, M, C, C2)
HN_SHAPES = [(1, 4, 256, 32), (5, 4, 256, 32), (9, 3, 40, 7), (17, 1, 256, 32)]


def hn_inputs(B, M, C, C2, seed=0):
    g = gen(seed)
    return [randn(g, B, M, C), randn(g, M, C, C, scale=C ** -0.5), randn(g, M, C, scale=0.3),
            randn(g, M, C, C, scale=C ** -0.5), randn(g, M, C, scale=0.3), randn(g, M, C2, C, scale=C ** -0.5),
            randn(g, M, C2, scale=0.3)]


@pytest.mark.parametrize("dtype", [torch.float32] + LOW, ids=str)
@pytest.mark.parametrize("shape", HN_SHAPES, ids=str)
def test_hypernet_mlps(shape, dtype):
    args = [t.to(dtype) for t in hn_inputs(*shape)]
    ref64 = ops.hypernet_mlps_reference(*[t.double() for t in args])
    B, M, C, C2 = shape
    out, buf, pad = guarded_empty((B, M, C2), dtype)
    _C.hypernet_mlps_cuda(*refs(*args, out), stream())
    torch.cuda.synchronize()
    assert_guards(buf, pad)
    if dtype == torch.float32:
        assert rel(out, ref64) < 1e-4
        assert rel(ops.hypernet_mlps(*[t.cpu() for t in args]), ref64.cpu()) < 1e-4
    else:
        check_low(out, ops.hypernet_mlps_reference(*args), ref64)
    assert rel(ops.hypernet_mlps(*args), out) < 1e-6  # the public op runs this same kernel


def test_hypernet_bad_inputs():
    args = [t.float() for t in hn_inputs(2, 4, 32, 8)]
    out = torch.empty(2, 4, 8, device=DEV)
    with pytest.raises(ValueError, match="w1"):
        _C.hypernet_mlps_cuda(*refs(*args[:3], args[3][:, :16].contiguous(), *args[4:], out), stream())
    with pytest.raises(TypeError, match="b2"):
        _C.hypernet_mlps_cuda(*refs(*args[:6], args[6].half(), out), stream())


# ------------------------------------------------------------------------------------------------
# mask postprocessing
# ------------------------------------------------------------------------------------------------

# (B, M, h, w, img_size, (input_h, input_w), (H0, W0))
PP_CASES = [
    (1, 3, 256, 256, 1024, (683, 1024), (1500, 2250) if not QUICK else (300, 450)),  # SAM: landscape photo
    (1, 1, 256, 256, 1024, (1024, 768), (1024, 768)),   # portrait, no final resize
    (2, 1, 17, 23, 100, (61, 100), (37, 150)),          # odd sizes, down + up
    (1, 2, 8, 8, 8, (8, 8), (5, 3)),                     # identity first step
    (1, 1, 1, 1, 4, (3, 2), (9, 7)),                     # 1 x 1 source
]


def pp_cuda(masks, case, threshold=None):
    B, M, h, w, S, inp, orig = case
    binarize = threshold is not None
    dtype = torch.bool if binarize else masks.dtype
    if binarize:
        out = torch.empty(B, M, *orig, dtype=torch.bool, device=DEV)
        out.view(torch.uint8).fill_(7)  # neither 0 nor 1: unwritten bytes show
    else:
        out = torch.full((B, M, *orig), float("nan"), dtype=dtype, device=DEV)
    _C.postprocess_masks_cuda(*refs(masks, out), S, inp[0], inp[1], float(threshold or 0.0), binarize, stream())
    torch.cuda.synchronize()
    if binarize:
        assert (out.view(torch.uint8) <= 1).all(), "some output bytes were never written"
    else:
        assert not torch.isnan(out).any(), "some output elements were never written"
    return out


@pytest.mark.parametrize("case", PP_CASES, ids=str)
def test_postprocess_fp32(case):
    B, M, h, w, S, inp, orig = case
    masks = randn(gen(0), B, M, h, w, scale=4.0)
    ref64 = ops.postprocess_masks_reference(masks, S, inp, orig)
    out = pp_cuda(masks.float(), case)
    assert rel(out, ref64) < 1e-4
    assert (out.double() - ref64).abs().max() < 1e-4 * ref64.abs().max()
    cpu = ops.postprocess_masks(masks.float().cpu(), S, inp, orig)
    assert rel(out.cpu(), cpu) < 1e-4
    assert rel(ops.postprocess_masks(masks.float(), S, inp, orig), ref64) < 1e-4


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("case", PP_CASES, ids=str)
def test_postprocess_low_precision(case, dtype):
    B, M, h, w, S, inp, orig = case
    masks = randn(gen(1), B, M, h, w, scale=4.0).to(dtype)
    ref64 = ops.postprocess_masks_reference(masks.double(), S, inp, orig)
    out = pp_cuda(masks, case)
    assert out.dtype == dtype
    check_low(out, ops.postprocess_masks_reference(masks, S, inp, orig), ref64)


@pytest.mark.parametrize("dtype", [torch.float32] + LOW, ids=str)
@pytest.mark.parametrize("case", PP_CASES[:3], ids=str)
def test_postprocess_binarize(case, dtype):
    B, M, h, w, S, inp, orig = case
    masks = randn(gen(2), B, M, h, w, scale=4.0).to(dtype)
    thr = 0.25
    ref64 = ops.postprocess_masks_reference(masks.double(), S, inp, orig)
    out = pp_cuda(masks, case, threshold=thr)
    assert out.dtype == torch.bool
    logits = pp_cuda(masks, case)  # the kernel's own logits: binarize must be exactly `logits > thr`
    assert torch.equal(out, logits.float() > thr)
    # vs float64: flips only where the exact value sits within rounding of the threshold
    tol = (1e-4 if dtype == torch.float32 else 3e-2) * float(ref64.abs().max())
    flips = out != (ref64 > thr)
    assert not flips.any() or float((ref64[flips] - thr).abs().max()) < tol
    assert torch.equal(ops.postprocess_masks(masks, S, inp, orig, threshold=thr), out)


def test_postprocess_bad_inputs():
    masks = torch.randn(1, 1, 8, 8, device=DEV)
    out = torch.empty(1, 1, 16, 16, device=DEV)
    with pytest.raises(ValueError, match="img_size"):
        _C.postprocess_masks_cuda(*refs(masks, out), 16, 17, 8, 0.0, False, stream())
    with pytest.raises(TypeError, match="out"):  # binarize wants a bool output
        _C.postprocess_masks_cuda(*refs(masks, out), 16, 16, 16, 0.0, True, stream())
    with pytest.raises(TypeError, match="masks"):
        _C.postprocess_masks_cuda(*refs(masks.double(), out), 16, 16, 16, 0.0, False, stream())
    with pytest.raises(ValueError, match="out"):
        _C.postprocess_masks_cuda(*refs(masks, out[:, :, :, :8]), 16, 16, 16, 0.0, False, stream())
