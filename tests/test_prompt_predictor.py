"""SamPredictor.predict's one-call CPU path (_C.PromptPredictor: numpy prompts checked and scaled in C++, prompt
tokens + whole decoder + post-processing in one call) vs the general path (predict_torch on the same kernels): equal
bit for bit; prompts it does not take fall back and give the same answer; bad prompts raise as before; hooks that
the official prompt encoder would run still run."""
import numpy as np
import pytest
import torch

import samfast
from samfast import _C
from sam_testing import TINY, count_fast, make_checkpoint, random_image

pytestmark = pytest.mark.skipif(not hasattr(_C, "PromptPredictor"), reason="PromptPredictor not built")


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    _, path = make_checkpoint(tmp_path_factory.mktemp("pp"), TINY, seed=41)
    p = samfast.SamPredictor(samfast.load("auto", path))
    p.set_image(random_image(150, 230, seed=3))  # not square: padded on one side
    return p


def general(p, point_coords=None, point_labels=None, box=None, multimask_output=True, return_logits=False):
    """The general path: coordinates mapped in numpy, then predict_torch (prompt_tokens + decoder + post op)."""
    c = l = b = None
    if point_coords is not None:
        c = torch.as_tensor(p.transform.apply_coords(np.asarray(point_coords, float), p.original_size),
                            dtype=torch.float)[None]
        l = torch.as_tensor(np.asarray(point_labels), dtype=torch.int)[None]
    if box is not None:
        b = torch.as_tensor(p.transform.apply_boxes(np.asarray(box, float).reshape(1, 4), p.original_size),
                            dtype=torch.float)
    m, s, lr = p.predict_torch(c, l, b, multimask_output=multimask_output, return_logits=return_logits)
    return m[0].numpy(), s[0].numpy(), lr[0].numpy()


PTS = np.array([[120.5, 80.25], [10.0, 149.0], [-7.0, 300.0]])  # the last one off the image
LBS = np.array([1, 0, 1])
BOX = np.array([30.0, 20.0, 200.5, 140.0])


@pytest.mark.parametrize("kw", [
    dict(point_coords=PTS[:1], point_labels=LBS[:1]),
    dict(point_coords=PTS, point_labels=LBS),
    dict(point_coords=PTS.astype(np.float32), point_labels=LBS.astype(np.int32)),
    dict(box=BOX),
    dict(box=BOX.astype(np.float32).reshape(2, 2)),
    dict(point_coords=PTS[:2], point_labels=LBS[:2], box=BOX),
    dict(point_coords=np.zeros((0, 2)), point_labels=np.zeros(0, np.int64), box=BOX),
], ids=["point", "points", "float32", "box", "box2x2", "points+box", "no-points+box"])
@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("logits", [False, True])
def test_one_call_equals_general_path(predictor, monkeypatch, kw, multimask, logits):
    runs = count_fast(predictor, monkeypatch)
    got = predictor.predict(**kw, multimask_output=multimask, return_logits=logits)
    want = general(predictor, **kw, multimask_output=multimask, return_logits=logits)
    assert runs == [True]
    K = 3 if multimask else 1
    assert got[0].shape == (K, 150, 230) and got[0].dtype == (np.float32 if logits else np.bool_)
    assert got[1].shape == (K,) and got[2].shape == (K, 64, 64)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and np.array_equal(g, w)
    assert got[0].ctypes.data % 64 == 0  # as torch's allocator


@pytest.mark.parametrize("kw", [
    dict(point_coords=PTS.tolist(), point_labels=LBS.tolist()),           # lists
    dict(point_coords=PTS, point_labels=LBS.astype(np.float64)),          # float labels
    dict(point_coords=PTS, point_labels=LBS.astype(np.uint8)),            # unsigned labels
    dict(point_coords=np.asfortranarray(np.c_[PTS, PTS])[:, :2], point_labels=LBS),  # not C-contiguous
    dict(point_coords=PTS.astype(">f8"), point_labels=LBS),               # big-endian
    dict(point_coords=torch.from_numpy(PTS), point_labels=torch.from_numpy(LBS)),  # tensors
], ids=["lists", "float-labels", "uint8-labels", "strided", "big-endian", "tensors"])
def test_other_prompt_kinds_fall_back_to_the_same_answer(predictor, monkeypatch, kw):
    want = predictor.predict(point_coords=PTS, point_labels=LBS)
    runs = count_fast(predictor, monkeypatch)
    got = predictor.predict(**kw)
    assert runs == [False]  # the general path answered
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


@pytest.mark.parametrize("kw, match", [
    (dict(point_coords=np.array([[np.nan, 2.0]]), point_labels=np.array([1])), "point_coords: contains NaN"),
    (dict(point_coords=np.array([[1.0, np.inf]], np.float32), point_labels=np.array([1])), "point_coords: contains NaN"),
    (dict(box=np.array([1.0, 2.0, np.nan, 4.0])), "box: contains NaN"),
])
def test_non_finite_prompts_raise_in_the_one_call_path(predictor, kw, match):
    with pytest.raises(ValueError, match=match):
        predictor.predict(**kw)


def test_prompt_encoder_hooks_still_run(predictor, monkeypatch):
    predictor.predict(point_coords=PTS, point_labels=LBS)  # the one-call predictor exists for this image
    calls = []
    h = predictor.model.prompt_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        runs = count_fast(predictor, monkeypatch)
        predictor.predict(point_coords=PTS, point_labels=LBS)
    finally:
        h.remove()
    assert calls == [1] and runs == []  # no one-call predictor while a hook is registered
    predictor.predict(point_coords=PTS, point_labels=LBS)
    assert calls == [1] and runs == [True]


def test_new_image_and_sizes_get_a_new_one_call_predictor(predictor, monkeypatch):
    try:
        predictor.set_image(random_image(97, 61, seed=8))
        runs = count_fast(predictor, monkeypatch)
        got = predictor.predict(point_coords=PTS[:2], point_labels=LBS[:2], box=BOX)
        want = general(predictor, point_coords=PTS[:2], point_labels=LBS[:2], box=BOX)
        assert runs == [True] and got[0].shape == (3, 97, 61)
        for g, w in zip(got, want):
            assert np.array_equal(g, w)
    finally:
        predictor.set_image(random_image(150, 230, seed=3))


def test_predictor_object_checks_its_arguments(predictor):
    fd = predictor._fast_decoder
    cache = predictor._kernel_cache()
    with pytest.raises(ValueError, match="weights: expected 8"):
        _C.PromptPredictor([], [], fd._dims, 16, 16, 1e-5, 1e-6, 256.0, 256.0, 256, 150, 230, 150, 230, 1.0, 1.0, None)
    pp = fd.prompt_predictor(cache, 256, predictor.input_size, predictor.original_size, 256)
    assert pp.predict(None, None, None, True, 0.0, True) is None  # no prompt: the general path
    refs = [samfast.ops.tensor_ref(t) for t in fd._prompt_weight_list()]
    crefs = [samfast.ops.tensor_ref(t) for t in (cache.x0, cache.pe, cache.k0, cache.v0, cache.q0, cache.packed,
                                                 cache.g)]
    with pytest.raises(ValueError, match="scale_x, scale_y"):
        _C.PromptPredictor(refs, crefs, fd._dims, *cache.hw, 1e-5, 1e-6, 256.0, 256.0, 256, 150, 230, 150, 230,
                           float("nan"), 1.0, None)


def test_it_keeps_what_it_reads_alive(predictor):
    """A predictor held past reset_image / set_image (another thread may do that during a call) still reads the
    image it was made for."""
    try:
        want = predictor.predict(point_coords=PTS, point_labels=LBS)
        pp = predictor._fast_decoder.prompt_predictor(predictor._kernel_cache(), 256, predictor.input_size,
                                                      predictor.original_size, 256)
        predictor.reset_image()
        import gc
        gc.collect()
        junk = [torch.full((1 << 16,), float("nan")) for _ in range(64)]  # reuse freed memory, if any
        got = pp.predict(PTS, LBS, None, True, 0.0, True)
        del junk
        for g, w in zip(got, want):
            assert np.array_equal(g, w)
    finally:
        predictor.set_image(random_image(150, 230, seed=3))


def test_replaced_prompt_weights_make_a_new_one(predictor, monkeypatch):
    """A prompt weight given new storage (.data = ...) is read from there, as the official encoder would."""
    emb = predictor.model.prompt_encoder.point_embeddings[1]
    old = emb.weight.data
    predictor.predict(point_coords=PTS, point_labels=LBS)  # a predictor made with the old storage
    try:
        emb.weight.data = old * 3.0
        runs = count_fast(predictor, monkeypatch)
        got = predictor.predict(point_coords=PTS, point_labels=LBS)
        want = general(predictor, point_coords=PTS, point_labels=LBS)
        assert runs == [True]
        for g, w in zip(got, want):
            assert np.array_equal(g, w)
    finally:
        emb.weight.data = old


@pytest.mark.parametrize("labels", [np.array([1, 0, 2**32 + 1]), np.array([1, 0, -(2**40)])], ids=["big", "negative"])
def test_labels_beyond_int32_take_the_general_path(predictor, monkeypatch, labels):
    runs = count_fast(predictor, monkeypatch)
    predictor.predict(point_coords=PTS, point_labels=labels)
    assert runs == [False]


def test_misaligned_arrays_take_the_general_path(predictor, monkeypatch):
    misaligned = np.frombuffer(bytearray(b"\0" + PTS.tobytes()), dtype=np.float64, offset=1).reshape(PTS.shape)
    assert not misaligned.flags.aligned
    want = predictor.predict(point_coords=PTS, point_labels=LBS)
    runs = count_fast(predictor, monkeypatch)
    got = predictor.predict(point_coords=misaligned, point_labels=LBS)
    assert runs == [False]
    for g, w in zip(got, want):
        assert np.array_equal(g, w)
