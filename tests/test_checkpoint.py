"""Checkpoint loading: formats, and errors that name the problem."""
import os
import pickle

import pytest
import torch

import samfast
from sam_testing import TINY, make_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ck"), TINY, seed=3)


def test_official_keys_load_strict(ckpt):
    official, path = ckpt
    model = samfast.build_sam_from_config(TINY, str(path))
    ours, theirs = model.state_dict(), official.state_dict()
    assert set(ours) == set(theirs)
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k


def test_registry_has_official_keys():
    assert set(samfast.sam_model_registry) == {"default", "vit_h", "vit_l", "vit_b"}


def test_wrapped_and_safetensors(ckpt, tmp_path):
    official, _ = ckpt
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": official.state_dict(), "epoch": 3}, wrapped)
    m = samfast.load("auto", wrapped)
    assert torch.equal(m.image_encoder.pos_embed, official.image_encoder.pos_embed)
    st = pytest.importorskip("safetensors.torch")
    p = tmp_path / "w.safetensors"
    st.save_file({k: v.contiguous() for k, v in official.state_dict().items()}, str(p))
    m2 = samfast.load("auto", p)
    assert torch.equal(m2.mask_decoder.iou_token.weight, official.mask_decoder.iou_token.weight)


def test_infer_config(ckpt):
    official, path = ckpt
    cfg = samfast.infer_config(samfast.load_state_dict(path))
    assert cfg == TINY


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        samfast.sam_model_registry["vit_b"](checkpoint=str(tmp_path / "nope.pth"))


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "junk.pth"
    p.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(samfast.CheckpointError, match="not a PyTorch checkpoint"):
        samfast.load("vit_b", p)


def test_state_dict_of_something_else(tmp_path):
    p = tmp_path / "other.pth"
    torch.save({"linear.weight": torch.zeros(2, 2)}, p)
    with pytest.raises(samfast.CheckpointError, match="not a SAM checkpoint"):
        samfast.load("vit_b", p)


def test_wrong_architecture_named(ckpt):
    _, path = ckpt
    with pytest.raises(samfast.CheckpointError, match=r"looks like .*3 blocks.*vit_b \(12 blocks"):
        samfast.sam_model_registry["vit_b"](checkpoint=str(path))


def test_missing_and_unexpected_keys(ckpt, tmp_path):
    official, _ = ckpt
    sd = dict(official.state_dict())
    del sd["mask_decoder.iou_token.weight"]
    sd["mask_decoder.extra.weight"] = torch.ones(1)
    p = tmp_path / "bad.pth"
    torch.save(sd, p)
    with pytest.raises(samfast.CheckpointError) as e:
        samfast.load("auto", p)
    assert "missing keys: mask_decoder.iou_token.weight" in str(e.value)
    assert "unexpected keys: mask_decoder.extra.weight" in str(e.value)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + _Evil.marker,))


def test_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    _Evil.marker = str(marker)
    p = tmp_path / "evil.pth"
    with open(p, "wb") as f:
        pickle.dump({"image_encoder.pos_embed": _Evil()}, f)
    with pytest.raises(samfast.CheckpointError, match="refused by the safe loader|not a PyTorch checkpoint"):
        samfast.load("auto", p)
    assert not marker.exists(), "loading a checkpoint executed code"
    # also as a torch.save'd zip checkpoint
    p2 = tmp_path / "evil2.pth"
    torch.save({"x": _Evil()}, p2)
    with pytest.raises(samfast.CheckpointError, match="refused by the safe loader"):
        samfast.load("auto", p2)
    assert not marker.exists()


def test_load_dtype_and_bad_arch(ckpt):
    _, path = ckpt
    m = samfast.load("auto", path, dtype=torch.bfloat16)
    assert m.image_encoder.patch_embed.proj.weight.dtype == torch.bfloat16
    assert m.prompt_encoder.point_embeddings[0].weight.dtype == torch.float32
    with pytest.raises(ValueError, match="arch must be one of"):
        samfast.load("vit_x", path)
    with pytest.raises(TypeError, match="dtype"):
        samfast.load("auto", path, dtype=torch.int8)
