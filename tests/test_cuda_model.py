"""End-to-end CUDA path: parity with the official model on the GPU, bf16, CUDA-graph decoder.

Every test here is marked `cuda` and skips (visibly) when no GPU is present."""
import numpy as np
import pytest
import torch

import samfast
from sam_testing import SMALL, make_checkpoint, random_image, rel_err

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible")
    from segment_anything import SamPredictor as OfficialPredictor

    official, path = make_checkpoint(tmp_path_factory.mktemp("ck"), SMALL, seed=11)
    po = OfficialPredictor(official.cuda())
    image = random_image(333, 149, seed=12)
    po.set_image(image)
    return po, path, image


PROMPT = dict(point_coords=np.array([[60.0, 100.0], [20, 30]]), point_labels=np.array([1, 0]))


def _agree(a, b):
    return (a == b).mean()


def test_fp32_matches_official_on_gpu(setup):
    po, path, image = setup
    assert samfast._C.cuda_compiled(), "samfast was built without CUDA"
    ps = samfast.SamPredictor(samfast.load("auto", path, device="cuda"))
    ps.set_image(image)
    assert rel_err(ps.get_image_embedding().cpu(), po.get_image_embedding().cpu()) < 1e-3
    mo, io, lo = po.predict(**PROMPT)
    ms, is_, ls = ps.predict(**PROMPT)
    assert _agree(ms, mo) > 0.999
    assert np.abs(is_ - io).max() < 1e-3


def test_bf16_masks_agree(setup):
    po, path, image = setup
    ps = samfast.SamPredictor(samfast.load("auto", path, device="cuda", dtype=torch.bfloat16))
    ps.set_image(image)
    mo, _, _ = po.predict(**PROMPT)
    ms, _, _ = ps.predict(**PROMPT)
    assert _agree(ms, mo) > 0.99


@pytest.mark.parametrize("multimask", [True, False])
def test_cuda_graph_decoder_equals_eager(setup, multimask):
    _, path, image = setup
    model = samfast.load("auto", path, device="cuda")
    eager, graphed = samfast.SamPredictor(model), samfast.SamPredictor(model, cuda_graphs=True)
    eager.set_image(image)
    graphed.set_image(image)
    for i in range(3):  # capture, then replays with new prompt values
        kw = dict(point_coords=np.array([[10.0 + 20 * i, 50.0]]), point_labels=np.array([1]),
                  multimask_output=multimask)
        me, ie, le = eager.predict(**kw)
        mg, ig, lg = graphed.predict(**kw)
        assert rel_err(lg, le) < 1e-5 and _agree(mg, me) > 0.9999
    boxes = torch.tensor([[5.0, 5, 100, 120], [30, 40, 200, 300]], device="cuda")
    be = eager.predict_torch(None, None, boxes=boxes)
    bg = graphed.predict_torch(None, None, boxes=boxes)
    assert torch.equal(be[0], bg[0])
    # a new image reuses the captured graphs through the static cache buffers
    img2 = random_image(200, 280, seed=13)
    eager.set_image(img2)
    graphed.set_image(img2)
    kw = dict(point_coords=np.array([[70.0, 50.0]]), point_labels=np.array([1]), multimask_output=multimask)
    assert rel_err(graphed.predict(**kw)[2], eager.predict(**kw)[2]) < 1e-5
