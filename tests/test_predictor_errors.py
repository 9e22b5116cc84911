"""Bad input raises a clear exception naming the argument (never a crash or a silent answer)."""
import numpy as np
import pytest
import torch

import samfast
from sam_testing import TINY, make_checkpoint, random_image


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    _, path = make_checkpoint(tmp_path_factory.mktemp("ck"), TINY, seed=4)
    return samfast.SamPredictor(samfast.load("auto", path))


def test_predict_before_set_image(predictor):
    predictor.reset_image()
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(point_coords=np.array([[1, 2]]), point_labels=np.array([1]))
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.get_image_embedding()


@pytest.mark.parametrize("image, exc, match", [
    (np.zeros((20, 30), np.uint8), ValueError, "HxWx3"),
    (np.zeros((20, 30, 4), np.uint8), ValueError, "HxWx3"),
    (np.zeros((20, 30, 3), np.float32), TypeError, "uint8"),
    ([[1, 2, 3]], TypeError, "numpy"),
])
def test_bad_images(predictor, image, exc, match):
    with pytest.raises(exc, match=match):
        predictor.set_image(image)


def test_bad_image_format(predictor):
    with pytest.raises(ValueError, match="image_format"):
        predictor.set_image(random_image(20, 30), image_format="RGBA")


def test_bgr_equals_flipped_rgb(predictor):
    img = random_image(40, 50, seed=1)
    predictor.set_image(img[..., ::-1].copy(), image_format="BGR")
    a = predictor.get_image_embedding().clone()
    predictor.set_image(img)
    assert torch.equal(a, predictor.get_image_embedding())


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(point_coords=np.array([[1.0, 2.0]])), ValueError, "together"),
    (dict(point_labels=np.array([1])), ValueError, "together"),
    (dict(point_coords=np.array([1.0, 2.0]), point_labels=np.array([1])), ValueError, "point_coords: expected shape Nx2"),
    (dict(point_coords=np.array([[1.0, 2.0, 3.0]]), point_labels=np.array([1])), ValueError, "Nx2"),
    (dict(point_coords=np.array([[1.0, 2.0]]), point_labels=np.array([1, 0])), ValueError, "point_labels"),
    (dict(point_coords=np.array([[np.nan, 2.0]]), point_labels=np.array([1])), ValueError, "NaN"),
    (dict(point_coords=[["a", "b"]], point_labels=[1]), TypeError, "point_coords"),
    (dict(box=np.array([1, 2, 3])), ValueError, "box"),
    (dict(box=np.array([1, 2, 3, 4]), mask_input=np.zeros((256, 256))), ValueError, "mask_input"),
])
def test_bad_prompts(predictor, kwargs, exc, match):
    predictor.set_image(random_image(40, 50))
    with pytest.raises(exc, match=match):
        predictor.predict(**kwargs)


def test_bad_torch_prompts(predictor):
    predictor.set_image(random_image(40, 50))
    with pytest.raises(ValueError, match="point_coords: expected a BxNx2"):
        predictor.predict_torch(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="boxes: expected a Bx4"):
        predictor.predict_torch(None, None, boxes=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="batch sizes differ"):
        predictor.predict_torch(torch.zeros(2, 1, 2), torch.ones(2, 1), boxes=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="transformed_image"):
        predictor.set_torch_image(torch.zeros(1, 3, 10, 10), (10, 10))


def test_no_prompt_is_allowed_like_official(predictor):
    predictor.set_image(random_image(40, 50))
    masks, iou, low = predictor.predict()
    assert masks.shape == (3, 40, 50) and iou.shape == (3,) and low.shape == (3, 64, 64)
