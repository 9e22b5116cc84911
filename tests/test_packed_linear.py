"""oneDNN-packed fp32 linears (samfast.modeling.packed_linear): float64-accurate, GELU fused exactly,
repacked when the weight changes, bypassed for autograd / other dtypes / SAMFAST_ONEDNN_LINEAR=0, and the
encoder still matches the official one with the path forced on (it is "auto" = AVX-512 CPUs otherwise)."""
import pytest
import torch
import torch.nn.functional as F

import samfast
from samfast.modeling import packed_linear
from sam_testing import TINY, make_checkpoint, rel_err

pytestmark = pytest.mark.skipif(not packed_linear._ops_available(), reason="this torch has no oneDNN linear ops")


@pytest.fixture
def forced(monkeypatch):
    monkeypatch.setenv("SAMFAST_ONEDNN_LINEAR", "1")


def make(in_f=96, out_f=200, rows=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    mod = torch.nn.Linear(in_f, out_f).requires_grad_(False)
    with torch.no_grad():
        mod.weight.copy_(torch.randn(out_f, in_f, generator=g) * 0.1)
        mod.bias.copy_(torch.randn(out_f, generator=g))
    return mod, torch.randn(2, rows // 2, in_f, generator=g)


@pytest.mark.parametrize("act", [None, "gelu", "relu"])
def test_matches_float64(forced, act):
    mod, x = make()
    assert packed_linear.use_packed(mod, x)
    out = packed_linear.linear(mod, x, act=act)
    ref = F.linear(x.double(), mod.weight.double(), mod.bias.double())
    ref = {None: ref, "gelu": F.gelu(ref), "relu": F.relu(ref)}[act]
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert float((out.double() - ref).abs().max() / ref.abs().max()) < 1e-5
    assert mod in packed_linear._PACKED


@pytest.mark.skipif(not samfast._C.cpu_features().get("avx512bf16"), reason="bf16 path needs AVX512-BF16")
def test_bf16_matches_torch_bf16(forced):
    mod, x = make()
    mod = mod.to(torch.bfloat16)
    xb = x.to(torch.bfloat16)
    assert packed_linear.use_packed(mod, xb)
    out = packed_linear.linear(mod, xb, act="gelu")
    ref = F.gelu(F.linear(xb.double(), mod.weight.double(), mod.bias.double()))
    tb = F.gelu(F.linear(xb, mod.weight, mod.bias))  # torch's own bf16 result: same error scale
    assert out.dtype == torch.bfloat16
    assert float((out.double() - ref).abs().max()) <= 2 * float((tb.double() - ref).abs().max()) + 1e-6


def test_repacks_when_the_weight_changes(forced):
    mod, x = make()
    packed_linear.linear(mod, x)
    with torch.no_grad():
        mod.weight.mul_(-2.0)  # in place: same storage, new version
    out = packed_linear.linear(mod, x)
    ref = F.linear(x.double(), mod.weight.double(), mod.bias.double())
    assert float((out.double() - ref).abs().max() / ref.abs().max()) < 1e-5


def test_bypassed_when_it_must_be(monkeypatch):
    mod, x = make()
    monkeypatch.setenv("SAMFAST_ONEDNN_LINEAR", "0")
    assert not packed_linear.use_packed(mod, x)
    monkeypatch.setenv("SAMFAST_ONEDNN_LINEAR", "1")
    assert not packed_linear.use_packed(mod, x[:, :10])         # too few rows for a small weight
    big, xb = make(in_f=256, out_f=2048, rows=8)
    assert packed_linear.use_packed(big, xb)                     # few rows, large weight: packed
    assert float((packed_linear.linear(big, xb, act="relu") - F.relu(F.linear(xb, big.weight, big.bias)))
                 .abs().max()) < 1e-4
    with pytest.raises(ValueError, match="act"):
        packed_linear.linear(mod, x, act="tanh")
    assert not packed_linear.use_packed(mod, x.double())         # not float32 / bfloat16
    assert not packed_linear.use_packed(mod, x.bfloat16())       # dtype differs from the weight's
    xg = x.clone().requires_grad_(True)
    assert not packed_linear.use_packed(mod, xg)                 # autograd needs the plain path
    out = packed_linear.linear(mod, xg)
    assert out.grad_fn is not None
    with samfast.ops.backend("reference"):
        assert not packed_linear.use_packed(mod, x)


def test_encoder_matches_official_with_packed_linears(forced, tmp_path):
    off, path = make_checkpoint(tmp_path, TINY)
    ours = samfast.load("auto", path)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, TINY.image_size, TINY.image_size, generator=g)
    with torch.no_grad():
        ref = off.image_encoder(x)
        out = ours.image_encoder(x)
    assert rel_err(out, ref) < 1e-4
    assert ours.image_encoder.blocks[0].mlp.lin1 in packed_linear._PACKED
    import copy

    copy.deepcopy(ours)  # the packed weights live outside the modules: copies and exports never see them
