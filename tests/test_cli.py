"""The `samfast` command line, driven as a user would: `python -m samfast ...` in a subprocess.

The environment is inherited (env=os.environ), so these run against a dev checkout (PYTHONPATH) or an
installed package alike. Each interpreter start imports torch (seconds on 2 cores), so independent
commands are started together and awaited together.
"""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import samfast
from samfast import cli
from sam_testing import TINY, make_checkpoint, random_image

BENCH = ["bench", "--config", "32,2,2,128", "--runs", "2", "--warmup", "0", "--image-size", "48,64",
         "--no-progress"]


def run_cli(args, env=None, timeout=300):
    """-> (returncode, stdout, stderr) of `python -m samfast ARGS` (environment inherited)."""
    p = subprocess.run([sys.executable, "-m", "samfast", *map(str, args)], env=env or os.environ,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    _, ckpt = make_checkpoint(d, TINY)
    Image.fromarray(random_image(96, 128, seed=5)).save(d / "img.png")
    (d / "corrupt.pth").write_bytes(b"\x80\x02not a checkpoint" * 16)
    (d / "notimage.png").write_text("hello")
    return d, ckpt


@pytest.fixture(scope="module")
def runs(files):
    """Start every command at once; {name: (returncode, stdout, stderr)}."""
    d, ckpt = files
    plot = ["--plot", d / "bench.png"] if has_matplotlib() else []
    cmds = {
        "info": ["info", "--json"],
        "bench": [*BENCH, "--compare", "--json", d / "bench.json", *plot],
        "segment": ["segment", d / "img.png", "--point", "60,40", "--point", "10,10,0", "--box", "20,15,110,80",
                    "--checkpoint", ckpt, "-o", d / "out.png", "--json", "--all"],
        "segment_best": ["segment", d / "img.png", "--point", "64,48", "--checkpoint", ckpt, "-o", d / "best.png"],
        "bad_image_size": [*BENCH[:7], "--image-size", "48xx"],
        "bad_runs": [*BENCH[:4], "0"],
        "missing_image": ["segment", d / "nope.png", "--point", "1,1", "--checkpoint", ckpt, "-o", d / "o.png"],
        "corrupt_ckpt": ["segment", d / "img.png", "--point", "1,1", "--checkpoint", d / "corrupt.pth", "-o",
                         d / "o.png"],
        "missing_ckpt": [*BENCH, "--checkpoint", d / "missing.pth"],
        "amg_help": ["amg", "--help"],
        "debug": ["segment", d / "img.png", "--point", "1,1", "--checkpoint", d / "corrupt.pth", "-o", d / "o.png"],
    }
    env = {"debug": {**os.environ, "SAMFAST_DEBUG": "1"}}
    with ThreadPoolExecutor(max_workers=4) as pool:     # a few interpreters at a time
        futures = {k: pool.submit(run_cli, v, env.get(k)) for k, v in cmds.items()}
        return {k: f.result() for k, f in futures.items()}


def test_info(runs):
    rc, out, err = runs["info"]
    assert rc == 0, err
    info = json.loads(out)
    assert info["samfast"] == samfast.__version__ and info["torch"]
    assert "cuda" in info and "features" in info["cpu"] and isinstance(info["build_info"], dict)


def test_bench_json_and_plot(runs, files):
    d, _ = files
    rc, out, err = runs["bench"]
    assert rc == 0, err
    assert "Traceback" not in err
    res = json.loads((d / "bench.json").read_text())
    assert res["settings"]["image_size"] == [48, 64] and res["settings"]["runs"] == 2
    eng = res["engines"]
    assert "samfast" in eng and "official" in eng           # segment_anything is a test dependency
    for name, r in eng.items():
        assert set(r["cases"]) == {"encoder", "decoder_1pt", "decoder_1box", "decoder_64box"}, name
        for st in r["cases"].values():
            assert st["n"] == 2 and len(st["samples_ms"]) == 2
            assert 0 < st["p50"] <= st["p90"] <= st["p99"] and st["mean"] > 0
        assert r["peak_memory_mb"] > 0
    assert "onnxruntime" in eng or any(n.startswith("onnxruntime") for n in res["notes"])
    assert "p50" in out and "samfast" in out and "speed-up vs official" in out
    if has_matplotlib():
        assert (d / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_segment_json(runs, files):
    d, _ = files
    rc, out, err = runs["segment"]
    assert rc == 0, err
    res = json.loads(out)
    assert res["size"] == [96, 128] and len(res["masks"]) == 3         # --all: SAM's 3 masks
    scores = [m["score"] for m in res["masks"]]
    assert scores == sorted(scores, reverse=True)
    for m in res["masks"]:
        im = Image.open(m["path"])
        assert im.size == (128, 96) and im.mode == "L"
        assert set(np.unique(np.asarray(im))) <= {0, 255}
        assert int((np.asarray(im) > 0).sum()) == m["area"]
    assert res["masks"][0]["path"] == str(d / "out.png")
    assert Image.open(res["overlay"]).size == (128, 96) and res["overlay"] == str(d / "out_overlay.png")


def test_segment_text_output(runs, files):
    d, _ = files
    rc, out, err = runs["segment_best"]
    assert rc == 0, err
    assert "score" in out and (d / "best.png").exists() and (d / "best_overlay.png").exists()
    assert not (d / "best_1.png").exists()                             # best mask only without --all


@pytest.mark.parametrize("name,needle", [
    ("bad_image_size", "--image-size"),
    ("bad_runs", "--runs"),
    ("missing_image", "image not found"),
    ("corrupt_ckpt", "corrupt.pth"),
    ("missing_ckpt", "checkpoint not found"),
])
def test_errors_are_one_line(runs, name, needle):
    rc, out, err = runs[name]
    assert rc == 2, (out, err)
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if "error" in line]
    assert len(lines) == 1 and needle in lines[0], err


def test_dispatch_to_other_tools(runs):
    rc, out, err = runs["amg_help"]
    if rc == 2:   # samfast.amg_cli not (yet) in this installation: a clear message, no traceback
        assert "samfast amg" in err and "not available" in err and "Traceback" not in err
    else:
        assert rc == 0 and "usage" in out.lower()


def test_debug_shows_traceback(runs):
    rc, _, err = runs["debug"]
    assert rc != 0 and "Traceback" in err and "CheckpointError" in err


# ---- argument handling in-process (no interpreter start): fast checks of the parser and messages


@pytest.mark.parametrize("argv,needle", [
    (["segment", "x.png", "--checkpoint", "c.pth", "-o", "o.png"], "give at least one --point"),
    (["segment", "x.png", "--point", "1,2,7", "--checkpoint", "c.pth", "-o", "o.png"], "label must be"),
    (["segment", "x.png", "--box", "5,5,1,1", "--checkpoint", "c.pth", "-o", "o.png"], "x0 < x1"),
    (["segment", "x.png", "--box", "1,2,3", "--checkpoint", "c.pth", "-o", "o.png"], "--box"),
    (["segment", "x.png", "--point", "1,1", "--checkpoint", "c.pth", "-o", "/nonexistent_dir/o.png"],
     "output directory"),
    (["bench", "--config", "32,2,3,128"], "--config"),
    (["bench", "--config", "a,b"], "--config"),
    (["bench", "--arch", "auto"], "--arch auto"),
    (["bench", "--device", "cuda:0"] if not __import__("torch").cuda.is_available() else ["bench", "--dtype", "fp32",
                                                                                          "--image-size", "0,5"],
     "cuda" if not __import__("torch").cuda.is_available() else "--image-size"),
])
def test_argument_errors_in_process(argv, needle, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("samfast: error:") and needle in err and err.count("\n") == 1, err


def test_unreadable_image_in_process(files, capsys):
    d, ckpt = files
    argv = ["segment", str(d / "notimage.png"), "--box", "1,1,5,5", "--checkpoint", str(ckpt), "-o", str(d / "o.png")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("samfast: error: cannot read image") and err.count("\n") == 1, err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--dtype", "int8"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        cli.main([])
    assert e.value.code == 2
