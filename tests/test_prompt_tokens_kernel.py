"""Prompt tokens in one C++ call (_C.prompt_tokens_cpu: the prompt encoder's point / box embeddings behind the
decoder's IoU and mask tokens) vs the official PromptEncoder + token assembly, vs the PyTorch reference, and the
predictor path that uses it."""
import numpy as np
import pytest
import torch

import samfast
import samfast.ops as ops
from samfast import _C
from sam_testing import TINY, count_fast, make_checkpoint, rel_err

pytestmark = pytest.mark.skipif(not hasattr(_C, "prompt_tokens_cpu"), reason="prompt_tokens_cpu not built")

# (B, labels per prompt or None, box): points are random, some off the image
CASES = [
    (1, [1], False),                # one point: padded
    (3, [1, 0, -1, 1, 0], False),   # padding labels inside, several prompts
    (2, [1, 0], True),              # points + box: no padding point
    (4, None, True),                # box only
    (1, [1, 2, 3, -1], False),      # labels without an embedding (official: the bare encoding)
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    official, path = make_checkpoint(tmp_path_factory.mktemp("pt"), TINY, seed=31)
    return official, samfast.load("auto", path)


def prompts(B, labels, box, seed=0):
    g = torch.Generator().manual_seed(seed)
    size = TINY.image_size
    coords = labels_t = boxes = None
    if labels is not None:
        coords = torch.rand(B, len(labels), 2, generator=g) * (1.4 * size) - 0.2 * size
        labels_t = torch.tensor(labels).repeat(B, 1)
    if box:
        xy = torch.rand(B, 2, generator=g) * size * 0.5
        boxes = torch.cat([xy, xy + torch.rand(B, 2, generator=g) * size * 0.5 + 1], dim=1)
    return coords, labels_t, boxes


def official_tokens(official, coords, labels, boxes):
    sparse, _ = official.prompt_encoder(points=(coords, labels) if coords is not None else None, boxes=boxes,
                                        masks=None)
    dec = official.mask_decoder
    prefix = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
    return torch.cat([prefix.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse], dim=1)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_kernel_matches_official_and_reference(models, case):
    official, ours = models
    coords, labels, boxes = prompts(*case)
    fd = samfast.SamPredictor(ours)._fast_decoder
    with torch.no_grad():
        want = official_tokens(official, coords, labels, boxes)
        got = fd.prompt_tokens((coords, labels) if coords is not None else None, boxes)  # the kernel
        pe, dec = ours.prompt_encoder, ours.mask_decoder
        ref = ops.prompt_tokens_reference(
            coords if coords is not None else torch.zeros(case[0], 0, 2),
            labels if labels is not None else torch.zeros(case[0], 0, dtype=torch.int64), boxes,
            pe.pe_layer.positional_encoding_gaussian_matrix, [e.weight for e in pe.point_embeddings],
            pe.not_a_point_embed.weight, dec.iou_token.weight, dec.mask_tokens.weight, boxes is None,
            pe.input_image_size)
    assert got is not None and got.shape == want.shape
    assert rel_err(got, want) < 1e-5, rel_err(got, want)  # sin / cos of |args| up to ~50: a few ulp apart
    assert rel_err(ref, want) < 1e-6
    padded = (labels == -1) if labels is not None else None
    if padded is not None and padded.any():  # padding points are exactly not_a_point_embed
        P = 1 + official.mask_decoder.num_mask_tokens
        rows = got[:, P:P + labels.shape[1]][padded]
        assert torch.equal(rows, official.prompt_encoder.not_a_point_embed.weight[0].expand_as(rows))


def test_float64_coords_take_the_reference(models):
    official, ours = models
    coords, labels, _ = prompts(2, [1, 0], False, seed=3)
    fd = samfast.SamPredictor(ours)._fast_decoder
    with torch.no_grad():
        got = fd.prompt_tokens((coords.double(), labels), None)
        want = official_tokens(official, coords.double(), labels, None)
    assert rel_err(got, want) < 1e-6


def test_predict_paths_use_it_and_match_official(models, monkeypatch):
    """predict (numpy) runs FastMaskDecoder.prompt_predictor's one _C call, predict_torch runs ops.prompt_tokens +
    the whole-decoder op: both as the official predictor."""
    official, ours = models
    import segment_anything as sa

    image = (np.random.default_rng(0).random((200, 300, 3)) * 255).astype(np.uint8)
    theirs, mine = sa.SamPredictor(official), samfast.SamPredictor(ours)
    theirs.set_image(image)
    mine.set_image(image)
    pts, lbs, box = np.array([[120.0, 80.0], [10.0, 150.0]]), np.array([1, 0]), np.array([30, 20, 250, 180.0])
    fast_runs, token_calls = count_fast(mine, monkeypatch), []
    orig_tokens = ops.prompt_tokens
    monkeypatch.setattr(samfast.ops, "prompt_tokens", lambda *a, **k: token_calls.append(1) or orig_tokens(*a, **k))
    for kw in (dict(point_coords=pts, point_labels=lbs), dict(box=box),
               dict(point_coords=pts, point_labels=lbs, box=box)):
        for mm in (True, False):
            m1, s1, l1 = theirs.predict(**kw, multimask_output=mm)
            m2, s2, l2 = mine.predict(**kw, multimask_output=mm)
            assert rel_err(torch.from_numpy(l2), torch.from_numpy(l1)) < 1e-4
            assert np.abs(s2 - s1).max() < 1e-4 and (m1 == m2).mean() > 0.999
            logits = mine.predict(**kw, multimask_output=mm, return_logits=True)[0]
            assert logits.dtype == np.float32 and ((logits > 0) == m2).mean() > 0.999
    c = torch.as_tensor(mine.transform.apply_coords(pts, mine.original_size), dtype=torch.float)[None]
    tm, ts, tl = theirs.predict_torch(c, torch.as_tensor(lbs)[None])
    mm_, ms_, ml_ = mine.predict_torch(c, torch.as_tensor(lbs)[None])
    assert rel_err(ml_, tl) < 1e-4 and (mm_ == tm).float().mean() > 0.999
    assert fast_runs == [True] * 12 and len(token_calls) == 1


def test_modules_run_where_the_kernel_cannot(models):
    _, ours = models
    fd = samfast.SamPredictor(ours)._fast_decoder
    coords, labels, _ = prompts(1, [1], False)
    with torch.enable_grad():
        assert fd.prompt_tokens((coords, labels), None) is None  # autograd: the modules
    with torch.no_grad():
        h = ours.prompt_encoder.register_forward_hook(lambda *a: None)
        try:
            assert fd.prompt_tokens((coords, labels), None) is None  # a hook would not run
        finally:
            h.remove()
        assert fd.prompt_tokens((coords, labels), None) is not None


@pytest.mark.parametrize("labels", [torch.tensor([[0.5, -0.5, 1.0, 1.5]]), torch.tensor([[255, 1, 0, 7]], dtype=torch.uint8),
                                    torch.tensor([[True, False, True, True]])], ids=["float", "uint8", "bool"])
def test_labels_of_other_dtypes_as_official(models, labels):
    """The official module compares labels with -1 / 0 / 1 in their own dtype: 0.5 matches none, uint8 255 == -1."""
    official, ours = models
    coords, _, boxes = prompts(1, [1, 1, 1, 1], True, seed=5)
    fd = samfast.SamPredictor(ours)._fast_decoder
    with torch.no_grad():
        got = fd.prompt_tokens((coords, labels), boxes)
        want = official_tokens(official, coords, labels, boxes)
    assert rel_err(got, want) < 1e-5


def test_weights_are_read_live(models):
    """No cached copies: in-place edits through .data (no version bump) are seen by the next call."""
    official, ours = models
    coords, labels, _ = prompts(1, [1, 0], False, seed=6)
    fd = samfast.SamPredictor(ours)._fast_decoder
    with torch.no_grad():
        before = fd.prompt_tokens((coords, labels), None).clone()
        for m in (ours.prompt_encoder.point_embeddings[1], ours.mask_decoder.iou_token):
            m.weight.data.mul_(2.0)
        try:
            after = fd.prompt_tokens((coords, labels), None)
        finally:
            for m in (ours.prompt_encoder.point_embeddings[1], ours.mask_decoder.iou_token):
                m.weight.data.mul_(0.5)
    # rows: IoU token, mask tokens, the label-1 point, the label-0 point, the padding point
    assert not torch.allclose(before[:, 0], after[:, 0]) and not torch.allclose(before[:, -3], after[:, -3])
    assert torch.equal(before[:, -2], after[:, -2]) and torch.equal(before[:, -1], after[:, -1])


def test_patched_encoders_run_the_modules(models):
    _, ours = models
    fd = samfast.SamPredictor(ours)._fast_decoder
    coords, labels, _ = prompts(1, [1], False)
    pe = ours.prompt_encoder
    with torch.no_grad():
        h = torch.nn.modules.module.register_module_forward_hook(lambda *a: None)
        try:
            assert fd.prompt_tokens((coords, labels), None) is None  # global hooks
        finally:
            h.remove()
        pe.pe_layer.forward_with_coords = lambda *a: None
        try:
            assert fd.prompt_tokens((coords, labels), None) is None  # a patched positional encoding
        finally:
            del pe.pe_layer.forward_with_coords
        assert fd.prompt_tokens((coords, labels), None) is not None


def test_plain_eager_excludes_meta_and_functorch():
    with torch.no_grad():
        assert ops._plain_eager(torch.zeros(2))
        assert not ops._plain_eager(torch.zeros(2, device="meta"))
        seen = []
        torch.vmap(lambda x: seen.append(ops._plain_eager(x)) or x)(torch.zeros(3, 2))
        assert seen == [False]
        low = torch.zeros(1, 1, 8, 8, device="meta")
        out = ops.postprocess_masks(low, 32, (32, 32), (40, 40), 0.0)  # meta: the op's fake impl
        assert out.shape == (1, 1, 40, 40) and out.device.type == "meta"


def _refs(B=2, Np=3, C=8, M=2, box=True):
    t = lambda *s: torch.randn(*s)  # noqa: E731
    out = torch.empty(B, 1 + M + Np + (0 if box else 1) + (2 if box else 0), C)
    return dict(coords=t(B, Np, 2), labels=torch.ones(B, Np, dtype=torch.int64), boxes=t(B, 4), gauss=t(2, C // 2),
                pe0=t(1, C), pe1=t(1, C), pe2=t(1, C), pe3=t(1, C), not_a_point=t(1, C), iou_token=t(1, C),
                mask_tokens=t(M, C), out=out)


_ORDER = ("coords", "labels", "boxes", "gauss", "pe0", "pe1", "pe2", "pe3", "not_a_point", "iou_token", "mask_tokens",
          "out")


@pytest.mark.parametrize("bad,match", [
    (dict(coords=torch.randn(2, 3, 3)), "coords"),
    (dict(labels=torch.ones(2, 4, dtype=torch.int64)), "labels"),
    (dict(labels=torch.ones(2, 3, dtype=torch.int32)), "labels"),
    (dict(boxes=torch.randn(2, 5)), "boxes"),
    (dict(pe2=torch.randn(1, 9)), "pe2"),
    (dict(not_a_point=torch.randn(8)), "not_a_point"),
    (dict(mask_tokens=torch.randn(3, 9)), "mask_tokens"),
    (dict(out=torch.empty(2, 9, 8)), "out"),
    (dict(gauss=torch.randn(2, 4).double()), "gauss"),
])
def test_C_checks_its_arguments(bad, match):
    args = _refs()
    args.update(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        _C.prompt_tokens_cpu(*[ops.tensor_ref(args[k]) for k in _ORDER], True, False, 256.0, 256.0)


def test_opcheck():
    a = _refs(box=False)
    torch.library.opcheck(torch.ops.samfast.prompt_tokens.default,
                          (a["coords"], a["labels"], None, a["gauss"], a["pe0"], a["pe1"], a["pe2"], a["pe3"],
                           a["not_a_point"], a["iou_token"], a["mask_tokens"], True, 256.0, 300.0))
