"""ops.cached_mask_decoder (the whole decoder in one C++ call) vs the op-by-op fast decoder, the official
MaskDecoder in float32, and the official MaskDecoder in float64 (error bound relative to fp32's own error)."""
import copy
import zlib

import numpy as np
import pytest
import torch

import samfast
from samfast import _C, ops
from samfast.fast_decoder import FastMaskDecoder
from sam_testing import TINY, build_official, randomise, rel_err

pytestmark = pytest.mark.skipif(not hasattr(_C, "cached_decoder_cpu"), reason="_C built without cached_decoder")


@pytest.fixture(scope="module")
def models():
    official = randomise(build_official(TINY), seed=7)
    sd = official.state_dict()
    ours = samfast.load("auto", sd)
    return official, ours


def _prompts(kind, B, g):
    pts = lbl = boxes = None
    if kind in ("points", "both"):
        pts = torch.rand(B, 3, 2, generator=g) * 250
        lbl = torch.randint(0, 2, (B, 3), generator=g)
    if kind in ("box", "both"):
        xy = torch.rand(B, 2, 2, generator=g) * 250
        boxes = torch.sort(xy, dim=1)[0].reshape(B, 4)
    return pts, lbl, boxes


def _official(official, emb, pts, lbl, boxes, multimask, dtype):
    """Official prompt encoder (float32: it casts coordinates) + official mask decoder in `dtype`."""
    with torch.no_grad():
        sp, de = official.prompt_encoder(points=(pts, lbl) if pts is not None else None, boxes=boxes, masks=None)
        pe = official.prompt_encoder.get_dense_pe()
        dec = copy.deepcopy(official.mask_decoder).to(dtype)
        return dec(emb.to(dtype), pe.to(dtype), sp.to(dtype), de.to(dtype), multimask)


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("kind,B", [("points", 1), ("box", 3), ("both", 2)])
def test_matches_official_and_float64(models, simd, multimask, kind, B):
    official, ours = models
    g = torch.Generator().manual_seed(zlib.crc32(f"{kind}-{B}-{multimask}".encode()))
    emb = torch.randn(1, 256, 16, 16, generator=g)
    pts, lbl, boxes = _prompts(kind, B, g)
    fd = FastMaskDecoder(ours)
    cache = fd.prepare(emb)
    assert cache.packed is not None, "the C++ decoder should be used for this model"
    sparse, _ = ours.prompt_encoder(points=(pts, lbl) if pts is not None else None, boxes=boxes, masks=None)
    low, iou = fd(cache, sparse, None, multimask)
    fd.whole_decoder_kernel = False
    low_py, iou_py = fd(cache, sparse, None, multimask)
    low32, iou32 = _official(official, emb, pts, lbl, boxes, multimask, torch.float32)
    low64, iou64 = _official(official, emb, pts, lbl, boxes, multimask, torch.float64)
    K = 3 if multimask else 1
    assert low.shape == (B, K, 64, 64) and iou.shape == (B, K) and low.dtype == torch.float32
    assert rel_err(low, low_py) < 1e-5 and rel_err(iou, iou_py) < 1e-5
    # error vs float64 bounded by a multiple of the official fp32 code's own error (+ a floor); the IoU
    # head gives one O(1) scalar per mask, so its error is taken in absolute terms
    err_ours, err_off = rel_err(low, low64), rel_err(low32, low64)
    assert err_ours <= 4 * err_off + 1e-6, (err_ours, err_off)
    err_ours, err_off = float((iou - iou64).abs().max()), float((iou32 - iou64).abs().max())
    assert err_ours <= 4 * err_off + 1e-5, (err_ours, err_off)


def _decode_on_grid(models, hw, seed, B=2):
    """Point prompts on an embedding grid of size hw (the prompt encoders' grid set for the call):
    (FastMaskDecoder, its cache, samfast (low, iou), official fp32 (low, iou))."""
    official, ours = models
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(1, 256, *hw, generator=g)
    ours.prompt_encoder.image_embedding_size = official.prompt_encoder.image_embedding_size = hw
    try:
        pts, lbl, _ = _prompts("points", B, g)
        fd = FastMaskDecoder(ours)
        cache = fd.prepare(emb)
        sparse, _ = ours.prompt_encoder(points=(pts, lbl), boxes=None, masks=None)
        ours_out = fd(cache, sparse, None, True)
        return fd, cache, ours_out, _official(official, emb, pts, lbl, None, True, torch.float32)
    finally:
        ours.prompt_encoder.image_embedding_size = official.prompt_encoder.image_embedding_size = (16, 16)


def test_full_size_grid(models):
    """The real SAM grid (64x64 image tokens, 256x256 low-res masks)."""
    _, _, (low, iou), (low32, iou32) = _decode_on_grid(models, (64, 64), seed=3)
    assert low.shape == (2, 3, 256, 256)
    assert rel_err(low, low32) < 1e-4 and rel_err(iou, iou32) < 1e-4


def _op_args(ours, B=1, T=7):
    fd = FastMaskDecoder(ours)
    c = fd.prepare(torch.randn(1, 256, 16, 16))
    tokens = torch.randn(B, T, 256)
    return [tokens, c.x0, c.pe, c.k0, c.v0, c.q0, c.packed, fd._dims, c.hw]


def test_folded_first_convt_matches_unfolded(models, simd):
    """With the per-image products g (FastMaskDecoder's default), the mask head's first ConvT is formed from g and
    the two image->token updates, and layer 1's token->image attention from g's kv block (t2i_ln); both agree with
    the direct products over the image rows."""
    _, ours = models
    fd = FastMaskDecoder(ours)
    g = torch.Generator().manual_seed(21)
    c = fd.prepare(torch.randn(1, 256, 16, 16, generator=g))
    assert c.g is not None and c.g.shape == (256, _C.cached_decoder_fold_width(fd._dims))
    for B, T, multimask in ((1, 7, True), (3, 8, False), (2, 6, True), (2, 5, False)):
        tokens = torch.randn(B, T, 256, generator=g)
        args = (tokens, c.x0, c.pe, c.k0, c.v0, c.q0, c.packed, fd._dims, c.hw, multimask)
        plain = ops.cached_mask_decoder(*args)
        folded = ops.cached_mask_decoder(*args, g=c.g)
        assert rel_err(folded[0], plain[0]) < 1e-5 and rel_err(folded[1], plain[1]) < 1e-5, (B, T)
        assert not torch.equal(folded[0], plain[0])  # other rounding: the folded path did run
        assert not torch.equal(folded[1], plain[1])  # the IoU too: layer 1's attention ran from g
    # more tokens (T > 8 here): the folds would cost more than they save, so g is not used
    for T in (9, 16):
        tokens = torch.randn(2, T, 256, generator=g)
        args = (tokens, c.x0, c.pe, c.k0, c.v0, c.q0, c.packed, fd._dims, c.hw, True)
        assert torch.equal(ops.cached_mask_decoder(*args, g=c.g)[0], ops.cached_mask_decoder(*args)[0])
    with pytest.raises(ValueError, match="g: expected shape"):
        ops.cached_mask_decoder(*args, g=c.g[:-8])


def _prompt_args(ours, emb, pts, lbl, boxes, multimask=True):
    """ops.cached_mask_decoder's arguments for these prompts on image embedding emb, and the cache's g."""
    fd = FastMaskDecoder(ours)
    c = fd.prepare(emb)
    with torch.no_grad():
        sparse, _ = ours.prompt_encoder(points=(pts, lbl) if pts is not None else None, boxes=boxes, masks=None)
        tokens = ours.mask_decoder.assemble_tokens(sparse)
    return (tokens, c.x0, c.pe, c.k0, c.v0, c.q0, c.packed, fd._dims, c.hw, multimask), c.g


def test_folded_first_convt_keeps_precision_for_large_row_means(models):
    """Image tokens whose mean over channels is large next to their spread would cancel badly in the folded
    form (it subtracts mean * colsum); such tiles take the direct product, so the result stays accurate."""
    official, ours = models
    g = torch.Generator().manual_seed(22)
    emb = torch.randn(1, 256, 16, 16, generator=g)
    emb[..., :6, :] = emb[..., :6, :] * 0.01 + 300.0  # the first 6 grid rows: mean 300, spread 0.01
    pts, lbl, _ = _prompts("points", 2, g)
    pts = pts[:, :1]  # one point: T = 7 tokens, the fold applies
    lbl = lbl[:, :1]
    args, g_img = _prompt_args(ours, emb, pts, lbl, None)
    plain, folded = ops.cached_mask_decoder(*args), ops.cached_mask_decoder(*args, g=g_img)
    low64, _ = _official(official, emb, pts, lbl, None, True, torch.float64)
    assert rel_err(folded[0], low64) <= 2 * rel_err(plain[0], low64) + 1e-6
    assert not torch.equal(folded[0], plain[0])  # the other tiles did run folded


def test_projection_passes_exact_rows(models, monkeypatch):
    """For a point or a box (T <= 8 tokens) with the per-image block g, both image passes run from per-image
    projections and form the LayerNorm statistics of layer 0's and layer 1's image->token outputs by expansion;
    rows where the expansion would cancel are recomputed exactly from x0. SAMFAST_PROJ_EXACT=1 sends every row
    through that recomputation: the results agree within float32 rounding, and both with the official decoder."""
    official, ours = models
    g = torch.Generator().manual_seed(23)
    emb = torch.randn(1, 256, 16, 16, generator=g)
    pts, lbl, boxes = _prompts("both", 2, g)
    pts, lbl = pts[:, :1], lbl[:, :1]  # one point + a box: T = 8 tokens
    args, g_img = _prompt_args(ours, emb, pts, lbl, boxes)
    assert args[0].shape[1] == 8
    low64, iou64 = _official(official, emb, pts, lbl, boxes, True, torch.float64)
    monkeypatch.delenv("SAMFAST_PROJ_EXACT", raising=False)
    expanded = ops.cached_mask_decoder(*args, g=g_img)
    monkeypatch.setenv("SAMFAST_PROJ_EXACT", "1")
    exact = ops.cached_mask_decoder(*args, g=g_img)
    assert not torch.equal(exact[0], expanded[0])  # the other path did run
    for low, iou in (expanded, exact):
        assert rel_err(low, low64) < 1e-5 and rel_err(iou, iou64) < 1e-5
    assert rel_err(exact[0], expanded[0]) < 1e-5


def test_projection_passes_keep_precision_for_large_row_means():
    """The per-image projections start from the image embedding minus each row's channel mean; with a float32
    running mean, rows of a large mean came out off-centre, which sharper image->token attention amplified (found
    in review). The g path must stay as accurate as the path without g."""
    official = randomise(build_official(TINY), seed=7)
    with torch.no_grad():
        for layer in official.mask_decoder.transformer.layers:
            layer.cross_attn_image_to_token.q_proj.weight.mul_(2.0)  # scores x4: sharper attention
            layer.cross_attn_image_to_token.k_proj.weight.mul_(2.0)
    ours = samfast.load("auto", official.state_dict())
    g = torch.Generator().manual_seed(5)
    emb = torch.randn(1, 256, 16, 16, generator=g)
    emb[..., :5, :] = emb[..., :5, :] * 0.1 + 3000.0
    pts, lbl, boxes = _prompts("both", 2, g)
    pts, lbl = pts[:, :1], lbl[:, :1]  # T = 8: the projection passes apply
    args, g_img = _prompt_args(ours, emb, pts, lbl, boxes)
    plain, projected = ops.cached_mask_decoder(*args), ops.cached_mask_decoder(*args, g=g_img)
    low64, _ = _official(official, emb, pts, lbl, boxes, True, torch.float64)
    assert rel_err(projected[0], low64) <= 2 * rel_err(plain[0], low64) + 1e-6


def test_packed_buffer_at_any_alignment(models):
    """The packed parameters give the same result wherever they sit (views, foreign allocators): the mask
    head's block is read in place when 64-byte aligned and copied otherwise."""
    _, ours = models
    tokens, x0, pe, k0, v0, q0, packed, dims, hw = _op_args(ours, B=2, T=9)
    ref = ops.cached_mask_decoder(tokens, x0, pe, k0, v0, q0, packed, dims, hw, True)
    for shift in (1, 4, 8, 15):
        view = torch.empty(packed.numel() + 16)[shift:shift + packed.numel()]
        view.copy_(packed)
        assert view.data_ptr() % 64 != 0
        out = ops.cached_mask_decoder(tokens, x0, pe, k0, v0, q0, view, dims, hw, True)
        assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1]), shift


def test_opcheck(models):
    _, ours = models
    args = _op_args(ours, B=2)
    tokens, x0, pe, k0, v0, q0, packed, dims, (h, w) = args
    feats = torch.randn(1, 256, h, w)
    for f, dense in ((None, None), (feats, torch.randn(2, 256, h, w))):
        torch.library.opcheck(torch.ops.samfast.cached_mask_decoder.default,
                              (tokens, x0, pe, k0, v0, q0, f, dense, packed, dims, h, w, True, 1e-5, 1e-6))
    g = ops.fold_image(x0, pe, packed, dims)
    torch.library.opcheck(torch.ops.samfast.cached_mask_decoder.default,
                          (tokens, x0, pe, k0, v0, q0, None, None, packed, dims, h, w, False, 1e-5, 1e-6, g))


def test_bad_inputs(models):
    _, ours = models
    tokens, x0, pe, k0, v0, q0, packed, dims, hw = _op_args(ours)
    ok = dict(tokens=tokens, x0=x0, pe=pe, k0=k0, v0=v0, q0=q0, packed=packed, dims=dims, hw=hw, multimask=True)

    def call(**kw):
        a = dict(ok, **kw)
        return ops.cached_mask_decoder(**a)

    assert call()[0].shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="tokens"):
        call(tokens=torch.randn(1, 7, 128))
    with pytest.raises(ValueError, match="tokens"):
        call(tokens=torch.randn(1, 4, 256))  # fewer than IoU + mask tokens
    with pytest.raises(ValueError, match="packed"):
        call(packed=packed[:-1])
    with pytest.raises(ValueError, match="k0"):
        call(k0=k0[:, :, :-8])
    with pytest.raises(ValueError, match="x0"):
        call(hw=(16, 8))  # grid does not match the cache
    with pytest.raises(TypeError, match="tokens"):
        call(tokens=tokens.double())
    with pytest.raises(ValueError, match="dims"):
        call(dims=dims[:-1])
    feats = torch.randn(1, 256, *hw)
    with pytest.raises(ValueError, match="dense"):
        call(features=feats, dense=torch.randn(2, 256, *hw))  # batch differs from tokens'
    with pytest.raises(ValueError, match="together"):
        call(dense=torch.randn(1, 256, *hw))
    with pytest.raises(ValueError, match="features"):
        call(features=feats[:, :, :-1], dense=torch.randn(1, 256, *hw))
    with pytest.raises(TypeError, match="dense"):
        call(features=feats, dense=torch.randn(1, 256, *hw).double())
    with pytest.raises(ValueError, match="dense"):
        call(features=feats, dense=torch.randn(1, 256, 0, hw[1]))  # empty, not "absent"
    with pytest.raises(ValueError, match="unsupported dims"):
        _C.cached_decoder_param_entries([252] + dims[1:])
    with pytest.raises(RuntimeError, match="kernels backend"), ops.backend("reference"):
        call()


def test_pack_checks_each_parameter(models):
    _, ours = models
    dims = ops.decoder_dims(ours.mask_decoder)
    entries = _C.cached_decoder_param_entries(dims)
    params = dict(ours.mask_decoder.named_parameters())
    assert {e[1] + ".weight" for e in entries} | {e[1] + ".bias" for e in entries} == \
        {k for k in params if not k.startswith(("iou_token", "mask_tokens"))}
    refs = [ops.tensor_ref(params[e[1] + s].detach()) for e in entries for s in (".weight", ".bias")]
    out = torch.empty(_C.cached_decoder_packed_numel(dims))
    bad = refs.copy()
    bad[2] = ops.tensor_ref(torch.zeros(5, 5))
    with pytest.raises(ValueError, match=entries[1][1] + ".weight"):
        _C.cached_decoder_pack_cpu(bad, dims, ops.tensor_ref(out))
    with pytest.raises(ValueError, match="tensors"):
        _C.cached_decoder_pack_cpu(refs[:-2], dims, ops.tensor_ref(out))


def test_unsupported_structure_uses_op_by_op_path(models):
    """A decoder the C++ path does not implement (GELU transformer MLPs) still runs, op by op."""
    official, ours = models
    official, ours = copy.deepcopy(official), copy.deepcopy(ours)
    for m in (official, ours):
        for layer in m.mask_decoder.transformer.layers:
            layer.mlp.act = torch.nn.GELU()
    assert ops.decoder_dims(ours.mask_decoder) is None
    g = torch.Generator().manual_seed(11)
    emb = torch.randn(1, 256, 16, 16, generator=g)
    pts, lbl, _ = _prompts("points", 2, g)
    fd = FastMaskDecoder(ours)
    cache = fd.prepare(emb)
    assert cache.packed is None
    sparse, _ = ours.prompt_encoder(points=(pts, lbl), boxes=None, masks=None)
    low, iou = fd(cache, sparse, None, True)
    low32, iou32 = _official(official, emb, pts, lbl, None, True, torch.float32)
    assert rel_err(low, low32) < 1e-4 and rel_err(iou, iou32) < 1e-4


def test_weight_change_is_picked_up(models):
    """Changing a decoder parameter in place repacks on the next image (predictor API)."""
    official, ours = models
    official, ours = copy.deepcopy(official), copy.deepcopy(ours)
    ps, image = samfast.SamPredictor(ours), np.random.default_rng(0).integers(0, 255, (64, 80, 3), np.uint8)
    from segment_anything import SamPredictor as OfficialPredictor

    po = OfficialPredictor(official)
    kw = dict(point_coords=np.array([[30.0, 20.0]]), point_labels=np.array([1]))
    ps.set_image(image)
    before = ps.predict(**kw)[2]
    with torch.no_grad():
        for m in (official, ours):
            m.mask_decoder.output_hypernetworks_mlps[1].layers[2].weight.mul_(-1.5)
    ps.set_image(image)
    po.set_image(image)
    after, expect = ps.predict(**kw)[2], po.predict(**kw)[2]
    assert rel_err(after, expect) < 1e-4
    assert rel_err(after, before) > 1e-2


@pytest.mark.parametrize("multimask", [True, False])
def test_mask_prompt(models, simd, multimask):
    """A mask prompt (dense embedding) runs the C++ path with layer 0 on embedding + dense, no cache."""
    official, ours = models
    g = torch.Generator().manual_seed(21)
    emb = torch.randn(1, 256, 16, 16, generator=g)
    pts, lbl, _ = _prompts("points", 2, g)
    mask_in = torch.randn(2, 1, 64, 64, generator=g) * 3
    fd = FastMaskDecoder(ours)
    cache = fd.prepare(emb)
    sparse, dense = ours.prompt_encoder(points=(pts, lbl), boxes=None, masks=mask_in)
    low, iou = fd(cache, sparse, dense, multimask)
    fd.whole_decoder_kernel = False
    low_py, iou_py = fd(cache, sparse, dense, multimask)
    with torch.no_grad():
        sp, de = official.prompt_encoder(points=(pts, lbl), boxes=None, masks=mask_in)
        low32, iou32 = official.mask_decoder(emb, official.prompt_encoder.get_dense_pe(), sp, de, multimask)
    assert rel_err(low, low_py) < 1e-5 and rel_err(iou, iou_py) < 1e-5
    assert rel_err(low, low32) < 1e-4 and float((iou - iou32).abs().max()) < 1e-4
    # and it differs from the same prompt without the mask (the dense input is used)
    low_nomask, _ = FastMaskDecoder(ours)(cache, sparse, None, multimask)
    assert rel_err(low, low_nomask) > 1e-2


def test_grid_not_multiple_of_8_uses_op_by_op_path(models):
    """The C++ decoder needs h * w % 8 == 0; other grids (e.g. 5 x 5) run op by op and still match."""
    fd, cache, (low, iou), (low32, iou32) = _decode_on_grid(models, (5, 5), seed=5, B=1)
    assert not fd._whole_kernel_ok(cache)
    assert rel_err(low, low32) < 1e-4 and float((iou - iou32).abs().max()) < 1e-4


def test_internal_dim_larger_than_c():
    """Dims the real model never has (Di > C) still size every buffer right (a review found an overflow)."""
    dims = [32, 2, 64, 64, 4, 16, 8, 8]  # C, heads, Di, mlp, mask tokens, iou hidden, C1, C2
    entries = _C.cached_decoder_param_entries(dims)
    g = torch.Generator().manual_seed(0)
    ws = []
    for kind, _, out, inp in entries:
        shape = (out, inp) if kind == "linear" else (out,) if kind == "norm" else (inp, out, 2, 2)
        ws += [torch.randn(shape, generator=g) * 0.2, torch.randn(out, generator=g) * 0.1]
    packed = torch.empty(_C.cached_decoder_packed_numel(dims))
    _C.cached_decoder_pack_cpu([ops.tensor_ref(t) for t in ws], dims, ops.tensor_ref(packed))
    h = w = 4
    N, C, H, Di = h * w, 32, 2, 64
    args = [torch.randn(2, 7, C, generator=g), torch.randn(1, N, C, generator=g), torch.randn(1, N, C, generator=g),
            torch.randn(H, Di // H, N, generator=g), torch.randn(H, N, Di // H, generator=g),
            torch.randn(N, Di, generator=g)]
    low, iou = ops.cached_mask_decoder(*args, packed, dims, (h, w), True)
    assert low.shape == (2, 3, 16, 16) and torch.isfinite(low).all() and torch.isfinite(iou).all()


def test_concurrent_predictors_match_sequential(models):
    """Two Python threads decoding at once (the C++ call releases the GIL; per-thread scratch) give the
    same results as one after the other."""
    import threading

    _, ours = models
    g = torch.Generator().manual_seed(9)
    jobs = []
    for i in range(2):
        fd = FastMaskDecoder(ours)
        cache = fd.prepare(torch.randn(1, 256, 16, 16, generator=g))
        pts, lbl, boxes = _prompts("both", 3 + i, g)
        sparse, _ = ours.prompt_encoder(points=(pts, lbl), boxes=boxes, masks=None)
        jobs.append((fd, cache, sparse))
    expected = [fd(cache, sparse, None, True) for fd, cache, sparse in jobs]
    results = [[None] * 20 for _ in jobs]

    def work(j):
        fd, cache, sparse = jobs[j]
        for r in range(20):
            results[j][r] = fd(cache, sparse, None, True)

    threads = [threading.Thread(target=work, args=(j,)) for j in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for j, (low, iou) in enumerate(expected):
        for got_low, got_iou in results[j]:
            assert torch.equal(got_low, low) and torch.equal(got_iou, iou)


@pytest.mark.parametrize("mask_prompt", [False, True])
def test_matches_reference(models, mask_prompt):
    """The op against its pure-PyTorch reference (the module's math on the same tokens)."""
    _, ours = models
    g = torch.Generator().manual_seed(31)
    emb = torch.randn(1, 256, 16, 16, generator=g)
    fd = FastMaskDecoder(ours)
    c = fd.prepare(emb)
    dec, pe_mod = ours.mask_decoder, ours.prompt_encoder
    pts, lbl, boxes = _prompts("both", 3, g)
    mask_in = torch.randn(3, 1, 64, 64, generator=g) if mask_prompt else None
    with torch.no_grad():
        sparse, dense = pe_mod(points=(pts, lbl), boxes=boxes, masks=mask_in)
        tokens = dec.assemble_tokens(sparse)
    for multimask in (True, False):
        kw = dict(features=emb, dense=dense) if mask_prompt else {}
        low, iou = ops.cached_mask_decoder(tokens, c.x0, c.pe, c.k0, c.v0, c.q0, c.packed, fd._dims, c.hw,
                                           multimask, **kw)
        low_ref, iou_ref = ops.cached_mask_decoder_reference(dec, tokens, emb, pe_mod.get_dense_pe(), dense,
                                                             multimask)
        assert rel_err(low, low_ref) < 1e-5 and float((iou - iou_ref).abs().max()) < 1e-5


def test_fold_image_of_a_non_contiguous_x0(models):
    """ops.fold_image takes any x0 layout (a contiguous copy is made and kept alive for the C++ call)."""
    _, ours = models
    fd = FastMaskDecoder(ours)
    c = fd.prepare(torch.randn(1, 256, 16, 16))
    x0_t = c.x0.transpose(1, 2).contiguous().transpose(1, 2)  # same values, channels-first storage
    assert not x0_t.is_contiguous()
    assert torch.equal(ops.fold_image(x0_t, c.pe, c.packed, fd._dims), c.g)
