"""Fused image->token attention kernel (_C.image_to_token_attention_cpu) vs the float64 reference."""
import pytest
import torch

import samfast.ops as ops
from samfast import _C

pytestmark = pytest.mark.skipif(not hasattr(_C, "image_to_token_attention_cpu"),
                                reason="image_to_token_attention_cpu not built")

# (B, Bq, Bx, N, Cq, C, H, T, with_q_add)
SHAPES = [
    (1, 1, 1, 37, 24, 40, 3, 5, True),
    (1, 1, 1, 37, 24, 40, 3, 5, False),
    (3, 1, 1, 37, 24, 40, 3, 5, True),    # q_in and residual broadcast over the batch
    (3, 3, 1, 37, 24, 40, 3, 5, False),
    (3, 1, 3, 37, 24, 40, 3, 5, True),
    (3, 3, 3, 37, 40, 36, 3, 5, True),    # C % 8 != 0: padded output panels
    (2, 1, 2, 50, 16, 40, 8, 7, False),   # SAM-like H, T (HT = 56)
    (1, 1, 1, 5, 7, 9, 1, 1, True),       # tiny, T = 1
]
SAM_SHAPE = (1, 1, 1, 4096, 256, 256, 8, 7, True)


def make_args(B, Bq, Bx, N, Cq, C, H, T, with_q_add, seed=0):
    """float64 inputs in the reference's argument order (eps and num_heads last); all non-trivial."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift

    HT = H * T
    q_add = rnd(N, Cq, scale=0.5) if with_q_add else None
    return [rnd(Bq, N, Cq), q_add, rnd(B, Cq, HT, scale=2 * Cq ** -0.5), rnd(B, HT), rnd(B, HT, C),
            rnd(C, scale=0.5), rnd(Bx, N, C), rnd(C, scale=0.3, shift=1.0), rnd(C, scale=0.3), 1e-5, H]


def to32(args):
    return [a.float() if isinstance(a, torch.Tensor) else a for a in args]


def rel_err(out, ref):
    return float((out.double() - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("shape", SHAPES + [SAM_SHAPE], ids=str)
def test_fp32_matches_reference(shape, simd):
    args = make_args(*shape)
    ref = ops.image_to_token_attention_reference(*args)
    out = ops._image_to_token_op(*to32(args))
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert rel_err(out, ref) < 1e-5


def test_public_op_dispatches_to_kernel(monkeypatch):
    args = to32(make_args(*SHAPES[2]))
    calls = []
    orig = _C.image_to_token_attention_cpu
    monkeypatch.setattr(_C, "image_to_token_attention_cpu", lambda *a: calls.append(1) or orig(*a))
    out = ops.image_to_token_attention(*args)
    assert calls, "kernel not used for float32 CPU inputs"
    with ops.backend("reference"):
        ref = ops.image_to_token_attention(*args)
    assert rel_err(out, ref.double()) < 1e-5
    # non-float32 falls back to the reference
    calls.clear()
    args64 = make_args(*SHAPES[2])
    out64 = ops.image_to_token_attention(*args64)
    assert not calls and out64.dtype == torch.float64
    bf = [a.bfloat16() if isinstance(a, torch.Tensor) else a for a in args64]
    assert ops.image_to_token_attention(*bf).dtype == torch.bfloat16 and not calls


def test_non_contiguous_inputs():
    args = to32(make_args(*SHAPES[4]))
    ref = ops.image_to_token_attention_reference(*[a.double() if isinstance(a, torch.Tensor) else a for a in args])
    args[2] = args[2].transpose(1, 2).contiguous().transpose(1, 2)  # u non-contiguous
    args[6] = args[6].transpose(0, 1).contiguous().transpose(0, 1)  # residual non-contiguous
    assert rel_err(ops.image_to_token_attention(*args), ref) < 1e-5


def _bad_cases():
    B, N, Cq, C, H, T = 2, 9, 8, 16, 2, 3
    base = to32(make_args(B, 1, 1, N, Cq, C, H, T, True))
    cases = []

    def case(i, val, exc, match):
        a = list(base)
        a[i] = val
        cases.append((a, exc, match))

    case(0, torch.zeros(3, N, Cq), ValueError, "q_in")            # Bq not 1 or B
    case(0, torch.zeros(1, N, Cq + 1), ValueError, "q_in")        # Cq mismatch
    case(1, torch.zeros(N + 1, Cq), ValueError, "q_add")
    case(2, torch.zeros(B, Cq, H * T + 1), ValueError, "u")       # HT not a multiple of H
    case(3, torch.zeros(B, H * T + 1), ValueError, "cb")
    case(4, torch.zeros(B + 1, H * T, C), ValueError, "r")
    case(5, torch.zeros(C + 1), ValueError, "out_bias")
    case(6, torch.zeros(3, N, C), ValueError, "residual")
    case(7, torch.zeros(C - 1), ValueError, "ln_w")
    case(8, torch.zeros(2, C), ValueError, "ln_b")
    case(4, base[4].double(), TypeError, "r")
    case(10, 0, ValueError, "num_heads")
    return cases


@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_wrong_args_via_ops(case):
    a, exc, match = _bad_cases()[case]
    with pytest.raises(exc, match=match):
        ops.image_to_token_attention(*a)


@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_wrong_args_via_C(case):
    a, exc, match = _bad_cases()[case]
    B, C = a[2].shape[0], a[4].shape[-1]
    out = torch.empty(B, a[0].shape[1], C)
    q_add = a[1] if a[1] is not None else torch.empty(0)
    refs = [ops.tensor_ref(t) for t in (a[0], q_add, *a[2:9], out)]
    with pytest.raises(exc, match=match):
        _C.image_to_token_attention_cpu(*refs, a[9], a[10])


def test_wrong_out_and_dtype_via_C():
    a = to32(make_args(2, 1, 1, 9, 8, 16, 2, 3, False))
    refs = [ops.tensor_ref(t) for t in (a[0], torch.empty(0), *a[2:9])]
    with pytest.raises(ValueError, match="out"):
        _C.image_to_token_attention_cpu(*refs, ops.tensor_ref(torch.empty(2, 9, 15)), 1e-5, 2)
    refs[0] = ops.tensor_ref(a[0].double())
    with pytest.raises(TypeError, match="q_in"):
        _C.image_to_token_attention_cpu(*refs, ops.tensor_ref(torch.empty(2, 9, 16)), 1e-5, 2)


@pytest.mark.parametrize("with_q_add", [True, False])
def test_opcheck(with_q_add):
    args = to32(make_args(3, 1, 3, 37, 24, 40, 3, 5, with_q_add))
    torch.library.opcheck(ops._image_to_token_op, tuple(args))
