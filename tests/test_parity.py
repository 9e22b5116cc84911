"""samfast vs the official segment-anything on randomised checkpoints (the oracle)."""
import numpy as np
import pytest
import torch

import samfast
from sam_testing import SMALL, TINY, make_checkpoint, random_image, rel_err

from segment_anything import SamPredictor as OfficialPredictor

BACKENDS = ["kernels", "reference"]


@pytest.fixture(scope="module", params=[TINY, SMALL], ids=lambda c: c.name)
def pair(request, tmp_path_factory):
    """(official predictor, samfast predictor) over the same randomised checkpoint and image."""
    cfg = request.param
    official, path = make_checkpoint(tmp_path_factory.mktemp("ckpt"), cfg, seed=1)
    ours = samfast.load("auto", path)
    image = random_image(201, 317, seed=2) if cfg is TINY else random_image(333, 149, seed=3)
    po, ps = OfficialPredictor(official), samfast.SamPredictor(ours)
    po.set_image(image)
    return po, ps, image


@pytest.fixture(params=BACKENDS)
def backend(request):
    with samfast.ops.backend(request.param):
        yield request.param


def _set(ps, image):
    ps.set_image(image)
    return ps


def assert_same_prediction(out_o, out_s, logits=False):
    masks_o, iou_o, low_o = out_o
    masks_s, iou_s, low_s = out_s
    assert masks_s.shape == masks_o.shape and masks_s.dtype == masks_o.dtype
    assert iou_s.shape == iou_o.shape and low_s.shape == low_o.shape
    assert rel_err(low_s, low_o) < 1e-4
    assert np.abs(iou_s - iou_o).max() < 1e-4
    if logits:
        assert rel_err(masks_s, masks_o) < 1e-4
        masks_s, masks_o = masks_s > 0, masks_o > 0
    agree = (masks_s == masks_o).mean()
    assert agree > 0.999, f"binary masks agree on only {agree:.5f}"


def test_image_embedding(pair, backend):
    po, ps, image = pair
    _set(ps, image)
    assert ps.original_size == po.original_size and ps.input_size == po.input_size
    emb_o, emb_s = po.get_image_embedding(), ps.get_image_embedding()
    assert emb_s.shape == emb_o.shape
    assert rel_err(emb_s, emb_o) < 1e-4


PROMPTS = {
    "single_point": dict(point_coords=np.array([[150.0, 90.0]]), point_labels=np.array([1])),
    "points_with_negatives": dict(point_coords=np.array([[20.0, 30.0], [120.5, 99.0], [60.0, 10.0]]),
                                  point_labels=np.array([1, 0, 1])),
    "box": dict(box=np.array([10.0, 20.0, 140.0, 120.0])),
    "box_and_point": dict(box=np.array([30, 15, 100, 130]), point_coords=np.array([[70, 60]]),
                          point_labels=np.array([0])),
}


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("prompt", sorted(PROMPTS))
def test_predict(pair, backend, prompt, multimask):
    po, ps, image = pair
    _set(ps, image)
    kw = PROMPTS[prompt]
    out_o = po.predict(**kw, multimask_output=multimask)
    out_s = ps.predict(**kw, multimask_output=multimask)
    assert_same_prediction(out_o, out_s)


def test_mask_input_and_logits(pair, backend):
    po, ps, image = pair
    _set(ps, image)
    kw = PROMPTS["single_point"]
    _, iou, low = po.predict(**kw)
    mask_input = low[np.argmax(iou)][None]
    out_o = po.predict(**kw, mask_input=mask_input, multimask_output=False, return_logits=True)
    out_s = ps.predict(**kw, mask_input=mask_input, multimask_output=False, return_logits=True)
    assert out_s[0].dtype == np.float32
    assert_same_prediction(out_o, out_s, logits=True)


def test_predict_torch_batch_of_boxes(pair, backend):
    po, ps, image = pair
    _set(ps, image)
    rng = np.random.default_rng(5)
    h, w = image.shape[:2]
    xy0 = rng.uniform(0, 0.5, size=(7, 2)) * [w, h]
    boxes = np.concatenate([xy0, xy0 + rng.uniform(0.2, 0.5, size=(7, 2)) * [w, h]], axis=1)
    bo = po.transform.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float), image.shape[:2])
    bs = ps.transform.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float), image.shape[:2])
    out_o = [t.numpy() for t in po.predict_torch(None, None, boxes=bo, multimask_output=True)]
    out_s = [t.numpy() for t in ps.predict_torch(None, None, boxes=bs, multimask_output=True)]
    assert_same_prediction(out_o, out_s)


def test_sam_forward_matches(pair, backend):
    """Sam.forward (batched dict API) agrees too."""
    po, ps, image = pair
    t = torch.as_tensor(po.transform.apply_image(image)).permute(2, 0, 1).contiguous()
    pts = po.transform.apply_coords_torch(torch.tensor([[[50.0, 60.0]]]), image.shape[:2])
    rec = dict(image=t, original_size=image.shape[:2], point_coords=pts, point_labels=torch.tensor([[1]]))
    with torch.no_grad():
        oo = po.model([rec], multimask_output=True)[0]
    os_ = ps.model([rec], multimask_output=True)[0]
    assert rel_err(os_["low_res_logits"], oo["low_res_logits"]) < 1e-4
    assert (os_["masks"] == oo["masks"]).float().mean() > 0.999


@pytest.mark.slow
def test_vit_b_full_size(tmp_path):
    """The real vit_b configuration at 1024x1024 (one case; the slow one)."""
    official, path = make_checkpoint(tmp_path, samfast.build_sam.CONFIGS["vit_b"] if False else
                                     samfast.SamConfig(768, 12, 12, (2, 5, 8, 11), name="vit_b"), seed=7)
    ours = samfast.sam_model_registry["vit_b"](checkpoint=str(path))
    image = random_image(479, 641, seed=8)
    po, ps = OfficialPredictor(official), samfast.SamPredictor(ours)
    po.set_image(image)
    ps.set_image(image)
    assert rel_err(ps.get_image_embedding(), po.get_image_embedding()) < 1e-4
    kw = dict(point_coords=np.array([[320.0, 200.0], [100, 400]]), point_labels=np.array([1, 0]))
    assert_same_prediction(po.predict(**kw), ps.predict(**kw))
    kw = dict(box=np.array([50, 60, 400, 300]))
    assert_same_prediction(po.predict(**kw, multimask_output=False), ps.predict(**kw, multimask_output=False))
