"""ONNX export + OnnxPredictor: samfast's torch path, the official exporter's graph, fp16, errors.

Every graph runs in onnxruntime (CPU). TINY config (256-px input, 16x16 embeddings, 64x64
mask_input) for everything; one vit_b-size decoder case (the decoder is cheap at full size).
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import samfast  # noqa: E402
from samfast.build_sam import CONFIGS  # noqa: E402
from samfast.onnx import OnnxPredictor, export_onnx  # noqa: E402
from samfast.onnx.export import export_official_decoder  # noqa: E402
from sam_testing import TINY, build_official, make_checkpoint, random_image, randomise, rel_err  # noqa: E402

PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(samfast.__file__)))  # .../python
CPU = ["CPUExecutionProvider"]


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=CPU)


def agree(a, b, thr=0.0) -> float:
    return float(((np.asarray(a) > thr) == (np.asarray(b) > thr)).mean())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """official model, samfast model, checkpoint path, and a lazy cache of exported graphs."""
    d = tmp_path_factory.mktemp("onnx")
    official, path = make_checkpoint(d, TINY, seed=3)
    model = samfast.load("auto", path)
    cache = {}

    def graph(name, **kw):
        if name not in cache:
            official_kw = kw.pop("official", None)
            if official_kw is not None:
                cache[name] = export_official_decoder(official, d / f"{name}.onnx", **official_kw)
            else:
                cache[name] = export_onnx(model, d / f"{name}.onnx", **kw)
        return cache[name]

    image = random_image(201, 317, seed=4)
    predictor = samfast.SamPredictor(model)
    predictor.set_image(image)
    return dict(official=official, model=model, path=path, dir=d, graph=graph, image=image, predictor=predictor)


def torch_decode(model, emb, coords, labels, box, mask, input_size, orig):
    """samfast torch path: prompt encoder + mask decoder (all 4 tokens) + postprocess."""
    with torch.no_grad():
        pts = None
        if coords is not None:
            pts = (torch.as_tensor(coords, dtype=torch.float)[None], torch.as_tensor(labels, dtype=torch.int)[None])
        bx = torch.as_tensor(box, dtype=torch.float).reshape(1, 4) if box is not None else None
        mk = torch.as_tensor(mask)[None] if mask is not None else None
        sparse, dense = model.prompt_encoder(points=pts, boxes=bx, masks=mk)
        low, iou = model.mask_decoder.predict_masks(torch.as_tensor(emb), model.prompt_encoder.get_dense_pe(),
                                                    sparse, dense)
        return model.postprocess_masks(low, input_size, orig).numpy(), iou.numpy(), low.numpy()


def onnx_feeds(emb, coords, labels, box, mask, orig):
    """Official-contract feeds (coords in the resized frame; padding point when there is no box)."""
    c, l = [np.zeros((0, 2))], [np.zeros(0)]
    if coords is not None:
        c.append(np.asarray(coords, float)), l.append(np.asarray(labels, float))
    if box is not None:
        c.append(np.asarray(box, float).reshape(2, 2)), l.append(np.array([2.0, 3.0]))
    elif coords is not None:
        c.append(np.zeros((1, 2))), l.append(np.array([-1.0]))
    mh = emb.shape[-1] * 4
    return {
        "image_embeddings": np.ascontiguousarray(emb, np.float32),
        "point_coords": np.concatenate(c)[None].astype(np.float32),
        "point_labels": np.concatenate(l)[None].astype(np.float32),
        "mask_input": (np.asarray(mask, np.float32)[None] if mask is not None else np.zeros((1, 1, mh, mh), np.float32)),
        "has_mask_input": np.array([1.0 if mask is not None else 0.0], np.float32),
        "orig_im_size": np.array(orig, np.float32),
    }


def prompts(s, mh, seed=0):
    rng = np.random.default_rng(seed)
    mask = rng.standard_normal((1, mh, mh)).astype(np.float32) * 3
    return [
        dict(coords=[[0.3 * s, 0.4 * s]], labels=[1], box=None, mask=None),
        dict(coords=[[0.3 * s, 0.4 * s], [0.6 * s, 0.2 * s], [0.5 * s, 0.5 * s]], labels=[1, 0, 1], box=None, mask=None),
        dict(coords=None, labels=None, box=[0.1 * s, 0.2 * s, 0.6 * s, 0.55 * s], mask=None),
        dict(coords=[[0.3 * s, 0.4 * s]], labels=[0], box=[0.1 * s, 0.2 * s, 0.6 * s, 0.55 * s], mask=mask),
        dict(coords=None, labels=None, box=None, mask=mask),  # N = 0 points
    ]


def check_vs_torch(model, sess, emb, orig, input_size, s, mh):
    for p in prompts(s, mh):
        masks, iou, low = sess.run(None, onnx_feeds(emb, p["coords"], p["labels"], p["box"], p["mask"], orig))
        t_masks, t_iou, t_low = torch_decode(model, emb, p["coords"], p["labels"], p["box"], p["mask"], input_size, orig)
        assert masks.shape == t_masks.shape and masks.shape[:2] == (1, 4)
        assert rel_err(low, t_low) < 1e-4 and rel_err(iou, t_iou) < 1e-4 and rel_err(masks, t_masks) < 1e-4
        assert agree(masks, t_masks) > 0.999


# ------------------------------------------------------------------------------------------ decoder


def test_decoder_matches_torch_tiny(tiny):
    """Aspect ratio 201x317 differs from any dummy input: the crop must follow orig_im_size."""
    sess = session(tiny["graph"]("dec"))
    pr = tiny["predictor"]
    check_vs_torch(tiny["model"], sess, pr.features.numpy(), pr.original_size, pr.input_size, 256, 64)
    # the official contract, exactly
    ins = {i.name: (i.type, len(i.shape)) for i in sess.get_inputs()}
    assert ins == {"image_embeddings": ("tensor(float)", 4), "point_coords": ("tensor(float)", 3),
                   "point_labels": ("tensor(float)", 2), "mask_input": ("tensor(float)", 4),
                   "has_mask_input": ("tensor(float)", 1), "orig_im_size": ("tensor(float)", 1)}
    assert [o.name for o in sess.get_outputs()] == ["masks", "iou_predictions", "low_res_masks"]
    proto = onnx.load(tiny["graph"]("dec"))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    onnx.checker.check_model(proto)
    onnx.shape_inference.infer_shapes(proto, strict_mode=True)


@pytest.mark.parametrize("opts", [
    dict(return_single_mask=False),
    dict(return_single_mask=True),
    dict(return_single_mask=False, use_stability_score=True, return_extra_metrics=True),
], ids=["multi", "single", "stability+extra"])
def test_decoder_matches_official_export(tiny, opts):
    """Both graphs in onnxruntime. orig_im_size keeps the official dummy's 2:3 aspect ratio, the
    only one the official graph crops correctly (segment-anything issue #56)."""
    key = "-".join(f"{k}{int(v)}" for k, v in opts.items())
    ours = session(tiny["graph"]("dec-" + key, **opts))
    official = session(tiny["graph"]("off-" + key, official=dict(opts)))
    rng = np.random.default_rng(1)
    for n, has, orig in [(1, 0.0, (600, 900)), (2, 1.0, (300, 450)), (3, 0.0, (800, 1200)), (5, 1.0, (64, 96))]:
        feeds = {"image_embeddings": rng.standard_normal((1, 256, 16, 16)).astype(np.float32),
                 "point_coords": rng.uniform(0, 256, (1, n, 2)).astype(np.float32),
                 "point_labels": rng.integers(-1, 4, (1, n)).astype(np.float32),
                 "mask_input": rng.standard_normal((1, 1, 64, 64)).astype(np.float32),
                 "has_mask_input": np.array([has], np.float32), "orig_im_size": np.array(orig, np.float32)}
        a, b = official.run(None, feeds), ours.run(None, feeds)
        assert len(a) == len(b)
        masks_a, masks_b = a[0], b[0]
        assert masks_a.shape == masks_b.shape == (1, 1 if opts["return_single_mask"] else 4, *orig)
        assert rel_err(masks_b, masks_a) < 1e-4 and agree(masks_b, masks_a) > 0.999
        assert rel_err(b[-1], a[-1]) < 1e-4  # low_res_masks (the official graph leaves it unnamed with extras)
        assert np.abs(b[1] - a[1]).max() < 1e-3  # iou predictions or stability scores
        if opts.get("return_extra_metrics"):
            assert np.abs(b[2] - a[2]).max() < 1e-3  # stability scores of the upscaled masks
            assert np.abs(b[3].astype(np.int64) - a[3].astype(np.int64)).max() <= 0.001 * np.prod(orig)  # areas


def test_decoder_vit_b_size(tmp_path):
    """Full-size decoder (1024 input: 64x64 embeddings, 256x256 mask_input) vs samfast torch and the
    official graph. Every SAM (vit_b/l/h) has this same decoder; a 2-block encoder keeps it fast."""
    cfg = samfast.SamConfig(embed_dim=64, depth=2, num_heads=4, global_attn_indexes=(1,), image_size=1024,
                            name="decoder_vit_b_size")
    official = randomise(build_official(cfg), seed=5)
    model = samfast.load(cfg, official.state_dict())
    assert model.prompt_encoder.image_embedding_size == (64, 64)
    vit_b = CONFIGS["vit_b"]  # the decoder's shapes depend on these two only
    assert (cfg.image_size, cfg.prompt_embed_dim) == (vit_b.image_size, vit_b.prompt_embed_dim)
    ours = session(export_onnx(model, tmp_path / "dec.onnx"))
    theirs = session(export_official_decoder(official, tmp_path / "off.onnx"))
    emb = np.random.default_rng(2).standard_normal((1, 256, 64, 64)).astype(np.float32)
    orig, input_size = (600, 900), (683, 1024)  # 2:3, where the official graph is right
    check_vs_torch(model, ours, emb, orig, input_size, 1024, 256)
    for p in prompts(1024, 256, seed=3)[:4]:
        feeds = onnx_feeds(emb, p["coords"], p["labels"], p["box"], p["mask"], orig)
        a, b = theirs.run(None, feeds), ours.run(None, feeds)
        for x, y in zip(a, b):
            assert rel_err(y, x) < 1e-4
        assert agree(b[0], a[0]) > 0.999


def test_fp16_decoder(tiny):
    path = tiny["graph"]("dec-fp16", dtype=torch.float16)
    proto = onnx.load(path)
    init_types = {i.data_type for i in proto.graph.initializer if len(i.dims) >= 2}
    assert onnx.TensorProto.FLOAT16 in init_types  # weights are fp16
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in proto.graph.input)
    onnx.checker.check_model(proto)
    fp16, fp32 = session(path), session(tiny["graph"]("dec"))
    pr = tiny["predictor"]
    for p in prompts(256, 64):
        feeds = onnx_feeds(pr.features.numpy(), p["coords"], p["labels"], p["box"], p["mask"], pr.original_size)
        a, b = fp32.run(None, feeds), fp16.run(None, feeds)
        assert b[0].dtype == np.float32 and agree(b[0], a[0]) > 0.99
        assert np.abs(b[1] - a[1]).max() < 0.05 * max(1.0, np.abs(a[1]).max())


# ------------------------------------------------------------------------------------------ encoder


def test_encoder_matches_torch(tiny):
    sess = session(tiny["graph"]("enc", part="encoder"))
    (inp,) = sess.get_inputs()
    assert inp.name == "image" and inp.shape == [1, 3, 256, 256] and inp.type == "tensor(float)"
    assert sess.get_outputs()[0].name == "image_embeddings" and sess.get_outputs()[0].shape == [1, 256, 16, 16]
    model = tiny["model"]
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.image_encoder(x).numpy()
    (out,) = sess.run(None, {"image": x.numpy()})
    assert rel_err(out, ref) < 1e-4
    onnx.shape_inference.infer_shapes(onnx.load(tiny["graph"]("enc", part="encoder")), strict_mode=True)


def test_fp16_encoder(tiny):
    fp16 = session(tiny["graph"]("enc-fp16", part="encoder", dtype=torch.float16))
    fp32 = session(tiny["graph"]("enc", part="encoder"))
    x = np.random.default_rng(0).standard_normal((1, 3, 256, 256)).astype(np.float32)
    a, b = fp32.run(None, {"image": x})[0], fp16.run(None, {"image": x})[0]
    assert b.dtype == np.float32 and rel_err(b, a) < 0.05
    dec = session(tiny["graph"]("dec"))
    for p in prompts(256, 64)[:3]:
        ma = dec.run(None, onnx_feeds(a, p["coords"], p["labels"], p["box"], None, (201, 317)))[0]
        mb = dec.run(None, onnx_feeds(b, p["coords"], p["labels"], p["box"], None, (201, 317)))[0]
        assert agree(ma, mb) > 0.99


@pytest.mark.parametrize("hw", [(201, 317), (97, 64), (256, 256)])
def test_encoder_in_graph_preprocess(tiny, hw):
    """uint8 HxWx3 of any size. Exact vs the torch path with the same (antialias-free) resize;
    close to the PIL path SamPredictor uses."""
    sess = session(tiny["graph"]("enc-pre", part="encoder", preprocess=True))
    (inp,) = sess.get_inputs()
    assert inp.type == "tensor(uint8)" and len(inp.shape) == 3 and inp.shape[2] == 3
    model, img = tiny["model"], random_image(*hw, seed=hw[0])
    (out,) = sess.run(None, {"image": img})
    nh, nw = samfast.utils.transforms.ResizeLongestSide.get_preprocess_shape(*hw, 256)
    with torch.no_grad():
        x = torch.as_tensor(img).permute(2, 0, 1)[None].float()
        x = torch.nn.functional.interpolate(x, (nh, nw), mode="bilinear", align_corners=False).round().clamp(0, 255)
        ref = model.image_encoder(model.preprocess(x)).numpy()
        pil = samfast.SamPredictor(model)
        pil.set_image(img)
    assert rel_err(out, ref) < 1e-3
    assert rel_err(out, pil.features.numpy()) < (1e-4 if hw == (256, 256) else 0.15)


# ------------------------------------------------------------------------------------------ predictor


def test_onnx_predictor_matches_sam_predictor(tiny):
    op = OnnxPredictor(tiny["graph"]("enc", part="encoder"), tiny["graph"]("dec"), providers=CPU, num_threads=2)
    sp, img = tiny["predictor"], tiny["image"]
    op.set_image(img[..., ::-1].copy(), image_format="BGR")
    assert op.original_size == sp.original_size and op.input_size == sp.input_size
    assert rel_err(op.get_image_embedding(), sp.features) < 1e-4
    h, w = img.shape[:2]
    rng = np.random.default_rng(0)
    cases = [dict(point_coords=[[0.3 * w, 0.4 * h]], point_labels=[1]),
             dict(point_coords=[[0.3 * w, 0.4 * h], [0.7 * w, 0.6 * h]], point_labels=[1, 0]),
             dict(box=np.array([0.1 * w, 0.2 * h, 0.6 * w, 0.7 * h])),
             dict(point_coords=[[0.3 * w, 0.4 * h]], point_labels=[1], box=[0.1 * w, 0.2 * h, 0.6 * w, 0.7 * h],
                  mask_input=rng.standard_normal((1, 64, 64)).astype(np.float32))]
    for kw in cases:
        for multi in (True, False):
            m1, i1, l1 = op.predict(**kw, multimask_output=multi)
            m2, i2, l2 = sp.predict(**kw, multimask_output=multi)
            assert m1.shape == m2.shape == ((3 if multi else 1), h, w) and m1.dtype == np.bool_
            assert (m1 == m2).mean() > 0.999 and rel_err(i1, i2) < 1e-4 and rel_err(l1, l2) < 1e-4
            logits, _, _ = op.predict(**kw, multimask_output=multi, return_logits=True)
            assert logits.dtype == np.float32 and ((logits > 0) == m1).all()
    op.reset_image()
    with pytest.raises(RuntimeError):
        op.predict(point_coords=[[1, 1]], point_labels=[1])


def test_onnx_predictor_single_mask_graph(tiny):
    op = OnnxPredictor(tiny["graph"]("enc", part="encoder"), tiny["graph"]("dec-return_single_mask1",
                       return_single_mask=True), providers=CPU)
    op.set_image(tiny["image"])
    masks, iou, low = op.predict(point_coords=[[50, 60]], point_labels=[1])
    assert masks.shape == (1, 201, 317) and iou.shape == (1,) and low.shape == (1, 64, 64)


def test_onnx_predictor_with_official_decoder_graph(tiny):
    """A decoder from segment-anything's exporter (no samfast metadata) works unchanged; the image
    is 2:3 so the official graph's baked-in crop is right."""
    op = OnnxPredictor(tiny["graph"]("enc", part="encoder"),
                       tiny["graph"]("off-return_single_mask0", official=dict(return_single_mask=False)), providers=CPU)
    img = random_image(200, 300, seed=7)
    sp = samfast.SamPredictor(tiny["model"])
    sp.set_image(img)
    op.set_image(img)
    for kw in (dict(point_coords=[[120, 80]], point_labels=[1]), dict(box=[30, 20, 200, 150])):
        m1, i1, _ = op.predict(**kw)
        m2, i2, _ = sp.predict(**kw)
        assert (m1 == m2).mean() > 0.999 and rel_err(i1, i2) < 1e-4


def test_malformed_feeds_name_the_input(tiny):
    op = OnnxPredictor(tiny["graph"]("enc", part="encoder"), tiny["graph"]("dec"), providers=CPU)
    pr = tiny["predictor"]
    good = onnx_feeds(pr.features.numpy(), [[10, 20]], [1], None, None, (201, 317))
    op.run_decoder(good)
    bad = [("point_coords", good["point_coords"][0], ValueError),  # rank 2
           ("point_labels", good["point_labels"].astype(np.float64), TypeError),
           ("has_mask_input", good["has_mask_input"].astype(np.int64), TypeError),
           ("mask_input", np.zeros((1, 1, 32, 32), np.float32), ValueError),  # static dim
           ("orig_im_size", [201.0, 317.0], TypeError),  # not an ndarray
           ("image_embeddings", good["image_embeddings"][0], ValueError)]
    for name, value, exc in bad:
        with pytest.raises(exc, match=name):
            op.run_decoder({**good, name: value})
    with pytest.raises(ValueError, match="orig_im_size"):
        op.run_decoder({k: v for k, v in good.items() if k != "orig_im_size"})
    with pytest.raises(TypeError, match="image"):
        op.run_encoder(np.zeros((1, 3, 256, 256), np.float64))
    with pytest.raises(ValueError, match="image"):
        op.run_encoder(np.zeros((3, 256, 256), np.float32))
    with pytest.raises(TypeError, match="image"):
        op.set_image(np.zeros((20, 30, 3), np.float32))
    op.set_image(tiny["image"])
    with pytest.raises(ValueError, match="mask_input"):
        op.predict(point_coords=[[1, 1]], point_labels=[1], mask_input=np.zeros((1, 256, 256)))
    with pytest.raises(ValueError, match="point_labels"):
        op.predict(point_coords=[[1, 1]], point_labels=[1, 0])
    with pytest.raises(ValueError, match="opset"):
        export_onnx(tiny["model"], tiny["dir"] / "x.onnx", opset=16)
    with pytest.raises(ValueError, match="part"):
        export_onnx(tiny["model"], tiny["dir"] / "x.onnx", part="both")


def test_predictor_runs_without_torch(tiny):
    """samfast/onnx/predictor.py needs only onnxruntime + numpy + PIL. `samfast/__init__` imports
    torch, so the package is stubbed as a bare namespace here (what a torch-free deployment sees)."""
    code = textwrap.dedent(f"""
        import sys, types
        import numpy as np
        pkg = types.ModuleType("samfast"); pkg.__path__ = [{os.path.join(PKG_DIR, 'samfast')!r}]
        sys.modules["samfast"] = pkg
        from samfast.onnx.predictor import OnnxPredictor
        p = OnnxPredictor({tiny['graph']('enc', part='encoder')!r}, {tiny['graph']('dec')!r},
                          providers=["CPUExecutionProvider"], num_threads=1)
        p.set_image(np.load({str(tiny['dir'] / 'img.npy')!r}))
        masks, iou, low = p.predict(point_coords=[[50, 60]], point_labels=[1])
        assert "torch" not in sys.modules, "torch was imported"
        np.save({str(tiny['dir'] / 'masks.npy')!r}, masks)
        print("OK")
    """)
    np.save(tiny["dir"] / "img.npy", tiny["image"])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-2000:]
    ref, _, _ = tiny["predictor"].predict(point_coords=[[50, 60]], point_labels=[1])
    assert (np.load(tiny["dir"] / "masks.npy") == ref).mean() > 0.999


def test_import_samfast_does_not_import_onnx():
    code = "import sys, samfast; assert callable(samfast.export_onnx); " \
           "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules; print('OK')"
    env = {**os.environ, "PYTHONPATH": PKG_DIR + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-2000:]


# ------------------------------------------------------------------------------------------ CLI


def test_export_cli(tiny, capsys):
    from samfast.onnx.cli import export_main

    out = tiny["dir"] / "cli" / "dec.onnx"
    assert export_main(["--checkpoint", str(tiny["path"]), "--part", "decoder", "-o", str(out),
                        "--return-single-mask", "--gelu-approximate", "--opset", "18"]) == 0
    assert "wrote" in capsys.readouterr().out
    sess = session(out)
    assert sess.get_outputs()[1].shape[1] == 1
    proto = onnx.load(out)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 18
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["samfast.part"] == "decoder" and meta["samfast.img_size"] == "256"
    pr = tiny["predictor"]
    feeds = onnx_feeds(pr.features.numpy(), [[50, 60]], [1], None, None, (201, 317))
    single = sess.run(None, feeds)[0]
    full = session(tiny["graph"]("dec")).run(None, feeds)[0]
    assert max(agree(single[0, 0], full[0, k]) for k in range(4)) > 0.99  # tanh-GELU: close, not equal
    with pytest.raises(SystemExit, match="checkpoint not found"):
        export_main(["--checkpoint", str(tiny["dir"] / "missing.pth"), "-o", str(out)])
    with pytest.raises(SystemExit, match="--preprocess"):
        export_main(["--checkpoint", str(tiny["path"]), "--preprocess", "-o", str(out)])
    with pytest.raises(SystemExit):
        export_main(["--checkpoint", str(tiny["path"]), "--part", "neither", "-o", str(out)])
    assert capsys.readouterr().err.startswith("usage: samfast export")
