"""Prompt tokens in one C++ call (_C.prompt_tokens_cpu: the prompt encoder's point / box embeddings behind the
decoder's IoU and mask tokens) vs the official PromptEncoder + token assembly, vs the PyTorch reference, and the
predictor path that uses it."""
import numpy as np
import pytest
import torch

import samfast
import samfast.ops as ops
from samfast import _C
from sam_testing import TINY, make_checkpoint, rel_err

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
        pe = ours.prompt_encoder
        ref = ops.prompt_tokens_reference(
            coords if coords is not None else torch.zeros(case[0], 0, 2),
            labels if labels is not None else torch.zeros(case[0], 0, dtype=torch.int64), boxes,
            *fd._prompt_params, boxes is None, pe.input_image_size)
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


def test_predict_uses_it_and_matches_official(models):
    official, ours = models
    import segment_anything as sa

    image = (np.random.default_rng(0).random((200, 300, 3)) * 255).astype(np.uint8)
    theirs, mine = sa.SamPredictor(official), samfast.SamPredictor(ours)
    theirs.set_image(image)
    mine.set_image(image)
    pts, lbs, box = np.array([[120.0, 80.0], [10.0, 150.0]]), np.array([1, 0]), np.array([30, 20, 250, 180.0])
    calls = []
    orig = ops.prompt_tokens
    try:
        samfast.ops.prompt_tokens = lambda *a, **k: calls.append(1) or orig(*a, **k)
        for kw in (dict(point_coords=pts, point_labels=lbs), dict(box=box), dict(point_coords=pts, point_labels=lbs,
                                                                                   box=box)):
            m1, s1, l1 = theirs.predict(**kw)
            m2, s2, l2 = mine.predict(**kw)
            assert rel_err(torch.from_numpy(l2), torch.from_numpy(l1)) < 1e-4
            assert np.abs(s2 - s1).max() < 1e-4
            assert (m1 == m2).mean() > 0.999
    finally:
        samfast.ops.prompt_tokens = orig
    assert len(calls) == 3


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


def _refs(B=2, Np=3, C=8, P=3, box=True):
    t = lambda *s: torch.randn(*s)  # noqa: E731
    out = torch.empty(B, P + Np + (0 if box else 1) + (2 if box else 0), C)
    return dict(coords=t(B, Np, 2), labels=torch.ones(B, Np, dtype=torch.int64), boxes=t(B, 4) if box else
                torch.empty(0), gauss=t(2, C // 2), point_emb=t(4, C), not_a_point=t(C), prefix=t(P, C), out=out)


@pytest.mark.parametrize("bad,match", [
    (dict(coords=torch.randn(2, 3, 3)), "coords"),
    (dict(labels=torch.ones(2, 4, dtype=torch.int64)), "labels"),
    (dict(labels=torch.ones(2, 3, dtype=torch.int32)), "labels"),
    (dict(boxes=torch.randn(2, 5)), "boxes"),
    (dict(point_emb=torch.randn(3, 8)), "point_emb"),
    (dict(prefix=torch.randn(3, 9)), "prefix"),
    (dict(out=torch.empty(2, 9, 8)), "out"),
    (dict(gauss=torch.randn(2, 4).double()), "gauss"),
])
def test_C_checks_its_arguments(bad, match):
    args = _refs()
    args.update(bad)
    refs = [ops.tensor_ref(args[k]) for k in ("coords", "labels", "boxes", "gauss", "point_emb", "not_a_point",
                                              "prefix", "out")]
    with pytest.raises((ValueError, TypeError), match=match):
        _C.prompt_tokens_cpu(*refs, False, 256.0, 256.0)


def test_opcheck():
    a = _refs(box=False)
    torch.library.opcheck(torch.ops.samfast.prompt_tokens.default,
                          (a["coords"], a["labels"], None, a["gauss"], a["point_emb"], a["not_a_point"], a["prefix"],
                           True, 256.0, 300.0))
