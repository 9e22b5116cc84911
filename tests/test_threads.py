"""samfast.set_num_threads: one call limits PyTorch's CPU ops and samfast's C++ kernels, from any thread."""
import threading

import numpy as np
import pytest
import torch

import samfast
from samfast import _C
from sam_testing import TINY, make_checkpoint, random_image


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    _C.set_num_threads(0)


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_set_num_threads_applies_to_kernels_on_every_thread(restore_threads):
    default = samfast.get_num_threads()
    assert default >= 1
    samfast.set_num_threads(1)
    assert torch.get_num_threads() == 1
    assert samfast.get_num_threads() == 1 and _C.get_num_threads() == 1
    assert _in_thread(samfast.get_num_threads) == 1  # a Python thread that never called set_num_threads
    _C.set_num_threads(0)
    assert samfast.get_num_threads() == default and _in_thread(samfast.get_num_threads) == default


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_thread_counts_raise(bad):
    with pytest.raises(ValueError, match="set_num_threads: n must be an int >= 1"):
        samfast.set_num_threads(bad)


def test_predictions_do_not_depend_on_thread_count(tmp_path, restore_threads):
    _, path = make_checkpoint(tmp_path, TINY, seed=11)
    ps = samfast.SamPredictor(samfast.load("auto", path))
    ps.set_image(random_image(120, 90, seed=12))
    kw = dict(point_coords=np.array([[30, 50]]), point_labels=np.array([1]), multimask_output=True,
              return_logits=True)
    ref = ps.predict(**kw)
    samfast.set_num_threads(1)
    one = _in_thread(lambda: ps.predict(**kw))
    np.testing.assert_allclose(one[2], ref[2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(one[1], ref[1], rtol=1e-5, atol=1e-5)
