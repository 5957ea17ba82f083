"""Suite files, users' own classifiers and the Python API (issue 16, items 1-4).

The example (examples/own_model: image folders + a TorchScript CNN) is made in a temporary folder; no
download, tiny images, two logit detectors and no bootstrap keep this file fast."""
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "own_model"
DETS = ["pytorch_ood.msp", "pytorch_ood.energy"]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The example's folder: images, model.pt and suite.toml."""
    folder = tmp_path_factory.mktemp("own_model")
    _make_example_module().main(folder)
    shutil.copy(EXAMPLE / "suite.toml", folder / "suite.toml")
    return folder


def _cli(args, capsys):
    from oodbench.benchmark.cli import main

    if args[0] == "run" and "--seeds" not in args:
        args = [*args, "--seeds", "0"]  # one classifier seed, as the API calls here
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_and_python_api_give_the_same_results_table(example, cache_dir, tmp_path, capsys):
    import oodbench

    rc, out, err = _cli(["run", str(example / "suite.toml"), "--detectors", *DETS, "--bootstrap", "0", "-q",
                         "--cache-dir", str(cache_dir), "--out", str(tmp_path / "cli")], capsys)
    assert rc == 0, err
    img = example / "images"
    res = oodbench.evaluate(example / "model.pt", fit=img / "fit", cal=img / "cal", id_test=img / "test",
                            tests={"dim": (img / "dim", "covariate"), "stripes": (img / "stripes", "far")},
                            detectors=DETS, name="own-model-example", input_size=(16, 16), n_boot=0,
                            cache_dir=cache_dir, write=True, out=tmp_path / "api")
    cli = pd.read_csv(tmp_path / "cli" / "results.csv.gz").drop(columns="run_id")  # each run has its own id
    api = pd.read_csv(tmp_path / "api" / "results.csv.gz").drop(columns="run_id")
    cli = cli[cli.test_set != "blur"]  # the suite file also has a built-in shift (not in the API call)
    cli = cli[~((cli.test_set == "covariate-mean"))]
    api = api[api.test_set != "covariate-mean"]
    # full-spectrum metrics count every covariate set (the shift too) as ID: they differ by design
    cli, api = cli[~cli.metric.str.startswith("fs_")], api[~api.metric.str.startswith("fs_")]
    key = ["detector", "test_set", "metric"]
    pd.testing.assert_frame_equal(cli.sort_values(key).reset_index(drop=True),
                                  api.sort_values(key).reset_index(drop=True))
    acc = api[api.metric == "accuracy"].set_index("test_set").value
    assert set(acc.index) == {"id", "dim"} and acc["id"] > 0.9  # stripes has no labels: no accuracy row
    rec = res.record
    assert rec["models"][0]["sha256"] and rec["models"][0]["key"].startswith("user-")
    assert set(rec["data_checksums"]) >= {"id_test", "dim", "stripes"}
    suite = oodbench.Suite.from_file(example / "suite.toml")
    assert suite.name == "own-model-example" and [t["name"] for t in suite.declaration["tests"]] == [
        "dim", "stripes", "blur"]


def test_every_detector_kind_runs_on_a_torchscript_model(example, cache_dir):
    """Features (input of the last linear), taps (top-level blocks) and the model (gradients, fc head)."""
    import oodbench

    res = oodbench.Suite.from_file(example / "suite.toml").evaluate(
        detectors=["pytorch_ood.mahalanobis", "pytorch_ood.react", "pytorch_ood.odin", "stattest"], n_boot=0,
        cache_dir=cache_dir)
    assert not res.record["failures"], res.record["failures"]
    assert res.record["models"][0]["fc_head"] is True
    assert res.record["models"][0]["taps"] == ["taps.0", "taps.3"]


def _make_example_module():
    spec = importlib.util.spec_from_file_location("make_example", EXAMPLE / "make_example.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_api_takes_arrays_tensors_datasets_and_an_nn_module(example, cache_dir):
    """An nn.Module (forward hooks) with the TorchScript file's weights scores as the TorchScript file does
    (graph outputs), on arrays, tensors and a torch dataset holding the folders' images."""
    import torch
    from torch.utils.data import TensorDataset

    import oodbench
    from oodbench.benchmark.data import user_images

    img, shape = example / "images", (16, 16, 3)
    sets = {k: user_images.load({"path": str(img / k)}, shape, k, labels=k != "stripes")
            for k in ("fit", "cal", "test", "stripes")}
    net = _make_example_module().net()
    net.load_state_dict(torch.jit.load(str(example / "model.pt")).state_dict())
    as_tensor = torch.tensor(sets["cal"].x).permute(0, 3, 1, 2).float() / 255
    dataset = TensorDataset(torch.tensor(sets["test"].x), torch.tensor(sets["test"].y))
    kw = dict(detectors=DETS + ["pytorch_ood.mahalanobis"], n_boot=0, cache_dir=cache_dir)
    mine = oodbench.evaluate(net, fit=(sets["fit"].x, sets["fit"].y), cal=(as_tensor, torch.tensor(sets["cal"].y)),
                             id_test=dataset, tests={"stripes": (sets["stripes"].x, "far")}, **kw)
    ref = oodbench.evaluate(example / "model.pt", fit=img / "fit", cal=img / "cal", id_test=img / "test",
                            tests={"stripes": (img / "stripes", "far")}, input_size=(16, 16), **kw)
    assert mine.record["models"][0]["key"] != ref.record["models"][0]["key"]
    a, b = (r.table.sort_values(["detector", "test_set", "metric"]).value.to_numpy() for r in (mine, ref))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_detector_the_model_cannot_serve_is_reported_not_applicable(example, cache_dir):
    """Features named as a module's output: the last linear layer is no longer the head, so ReAct (which needs
    it) fails with the reason, and the feature detectors still run."""
    import oodbench

    img = example / "images"
    res = oodbench.evaluate(example / "model.pt", fit=img / "fit", cal=img / "cal", id_test=img / "test",
                            tests={"stripes": (img / "stripes", "far")}, input_size=(16, 16), features="5",
                            detectors=["pytorch_ood.react", "pytorch_ood.mahalanobis"], n_boot=0,
                            cache_dir=cache_dir)
    fails = {f["detector"]: f["error"] for f in res.record["failures"]}
    assert list(fails) == ["pytorch_ood.react"]
    assert "not applicable to this model" in fails["pytorch_ood.react"] and "output of '5'" in fails[
        "pytorch_ood.react"]


def test_torchscript_scripted_and_traced_give_the_hooked_modules_features(tmp_path):
    """A residual net with its last linear layer inside a head nn.Sequential: the TorchScript graph path
    (scripted and traced) gives the same logits, features and taps as forward hooks on the nn.Module."""
    import warnings
    from types import SimpleNamespace

    import torch
    import torch.nn as nn

    from oodbench.benchmark.data import ImageSet
    from oodbench.benchmark.models import user_model

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.conv(x)) + x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.layer1, self.layer2 = nn.Conv2d(1, 4, 3, padding=1), Block(4), Block(4)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 10))

        def forward(self, x):
            return self.head(self.layer2(self.layer1(self.stem(x))).mean((2, 3), keepdim=True))

    torch.manual_seed(0)
    net = Net().eval()
    x = np.random.default_rng(0).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    fit = ImageSet("fit", x, np.arange(12) % 10, "c", [str(i) for i in range(10)])
    data = SimpleNamespace(fit=fit, id_test=fit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(net).save(str(tmp_path / "scripted.pt"))
        torch.jit.trace(net, torch.rand(2, 1, 28, 28)).save(str(tmp_path / "traced.pt"))
    ref, meta = user_model.load({"object": user_model.register(net), "name": "net"}, data)
    assert meta["features"] == "input of head.3" and meta["fc_head"]
    assert meta["taps"] == ["taps.stem", "taps.layer1", "taps.layer2"]
    xt = torch.rand(5, 1, 28, 28)
    want = ref.forward_features(xt)
    for f in ("scripted.pt", "traced.pt"):
        m, meta_f = user_model.load({"torchscript": str(tmp_path / f), "name": "net"}, data)
        assert meta_f["taps"] == meta["taps"] and meta_f["fc_head"]
        for a, b in zip(want, m.forward_features(xt)):
            torch.testing.assert_close(a, b)
    m, meta_f = user_model.load({"torchscript": str(tmp_path / "scripted.pt"), "name": "net",
                                 "features": "layer2"}, data)
    assert meta_f["feature_dim"] == 4 and not meta_f["fc_head"]


def _write(folder: Path, text: str) -> Path:
    p = folder / "bad.toml"
    p.write_text(text)
    return p


GOOD = """name = "bad"
[id]
fit_path = "images/fit"
cal_path = "images/cal"
test_path = "images/test"
[model]
torchscript = "model.pt"
input_size = [16, 16]
[[tests]]
name = "stripes"
group = "far"
path = "images/stripes"
"""


@pytest.mark.parametrize("edit, expected", [
    (lambda s: s.replace('[model]\ntorchscript = "model.pt"\ninput_size = [16, 16]\n', ""),
     "model: missing (required: name, id, model, tests)"),
    (lambda s: s.replace('[model]\n', '[model]\ncolour = "red"\n'), "model.colour: unknown key (known keys: arch"),
    (lambda s: s.replace('group = "far"', 'group = "middle"'),
     "tests[0] (stripes).group: expected one of near, far, covariate, novel, got 'middle'"),
    (lambda s: s.replace('input_size = [16, 16]', 'input_size = 16'), "model.input_size: expected an array, got 16"),
    (lambda s: s.replace('path = "images/stripes"', 'path = "images/nowhere"'),
     "tests[0] (stripes).path: expected an image folder or an .npz file;"),
])
def test_bad_suite_file_gives_one_clear_error(example, cache_dir, capsys, edit, expected):
    bad = _write(example, edit(GOOD))
    rc, out, err = _cli(["run", str(bad), "--detectors", *DETS, "-q", "--cache-dir", str(cache_dir)], capsys)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith(f"oodbench run: error: {bad}: {expected}"), err


def _run_bad(folder, text, cache_dir, capsys):
    bad = _write(folder, text)
    rc, out, err = _cli(["run", str(bad), "--detectors", *DETS, "-q", "--bootstrap", "0", "--cache-dir",
                         str(cache_dir), "--out", str(folder / "out")], capsys)
    assert rc == 2 and err.count("\n") == 1, err
    return err


def test_unreadable_image_is_named(example, cache_dir, capsys, tmp_path):
    shutil.copytree(example / "images" / "stripes", tmp_path / "junk")
    (tmp_path / "junk" / "0005.png").write_bytes(b"not a png at all")
    err = _run_bad(example, GOOD.replace('"images/stripes"', f'"{tmp_path / "junk"}"'), cache_dir, capsys)
    assert f"unreadable image {tmp_path / 'junk' / '0005.png'}" in err


def test_mismatched_channels(example, cache_dir, capsys):
    err = _run_bad(example, GOOD.replace('test_path = "images/test"\n', 'test_path = "images/test"\nchannels = 1\n'),
                   cache_dir, capsys)
    assert "mismatched channels: the model's first convolution takes 3 channel(s), the ID images have 1" in err


def test_model_output_must_be_n_by_classes(example, cache_dir, capsys):
    (example / "badnets.py").write_text(
        "import torch.nn as nn\n\n\ndef five():\n    return nn.Sequential(nn.Flatten(), nn.Linear(768, 5))\n")
    err = _run_bad(example, GOOD.replace('torchscript = "model.pt"', 'factory = "badnets:five"'), cache_dir, capsys)
    assert "model output has shape (8, 5) for 8 images; expected (N, classes) = (8, 3)" in err
    sys.modules.pop("badnets", None)


def _digits(folder: Path, x, y, size, rgb):
    from PIL import Image

    for i, (im, c) in enumerate(zip(x, y)):
        d = folder / str(c)
        d.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(im).resize((size, size), Image.BILINEAR)
        (im.convert("RGB") if rgb else im).save(d / f"{i}.png")


@pytest.mark.slow
def test_mnist_lenet_with_two_folder_test_sets(data_dir, cache_dir, tmp_path, capsys):
    """dataset = "mnist", arch = "lenet", a labelled covariate folder and a far folder (other sizes, RGB, JPEG)."""
    from PIL import Image

    from oodbench.benchmark.data import load

    test = load("mnist", "test", data_dir)
    rng = np.random.default_rng(1)
    idx = rng.choice(len(test), 120, replace=False)
    _digits(tmp_path / "thick", 255 - test.x[idx], test.y[idx], 40, rgb=True)  # inverted, 40x40 RGB
    (tmp_path / "noise").mkdir()
    for i in range(80):
        s = int(rng.integers(20, 60))
        Image.fromarray(rng.integers(0, 256, (s, s, 3), dtype=np.uint8)).save(tmp_path / "noise" / f"{i}.jpg")
    suite = tmp_path / "heldout.toml"
    suite.write_text(f"""name = "heldout"
max_test = 200
[id]
dataset = "mnist"
[model]
arch = "lenet"
recipe = "smoke"
[splits]
train = 2000
fit = 300
cal = 300
[[tests]]
name = "inverted-digits"
group = "covariate"
path = "{tmp_path / 'thick'}"
labels = true
[[tests]]
name = "noise-photos"
group = "far"
path = "{tmp_path / 'noise'}"
""")
    rc, out, err = _cli(["run", str(suite), "--data-dir", str(data_dir), "--cache-dir", str(cache_dir), "--detectors",
                         *DETS, "--bootstrap", "0", "-q", "--out", str(tmp_path / "out")], capsys)
    assert rc == 0, err
    df = pd.read_csv(tmp_path / "out" / "results.csv.gz")
    acc = df[df.metric == "accuracy"]
    assert set(acc.test_set) == {"id", "inverted-digits"}
    auroc = df[df.metric == "auroc"]
    for det in DETS:
        got = set(auroc[auroc.detector == det].test_set)
        assert {"inverted-digits", "noise-photos"} <= got, (det, got)
    assert (df.status == "ok").all()


def test_id_folder_is_split_with_a_seed_and_npz_test_sets_are_read(example, cache_dir, tmp_path):
    """id.path alone: a seeded hold-out (a fifth) is the ID test set, the rest split into train / fit / cal;
    an .npz test set (float images, channels first) is converted to the ID shape; the checksums are content."""
    import oodbench

    x = np.random.default_rng(0).random((10, 3, 20, 24)).astype(np.float32)
    np.savez(tmp_path / "noise.npz", x=x)
    shutil.copytree(example / "images" / "fit", tmp_path / "train")
    (tmp_path / "s.toml").write_text('name = "split"\n[id]\npath = "train"\n[model]\ntorchscript = "%s"\n'
                                     'input_size = [16, 16]\n[[tests]]\nname = "noise"\ngroup = "far"\n'
                                     'path = "noise.npz"\n' % (example / "model.pt"))
    suite = oodbench.Suite.from_file(tmp_path / "s.toml")
    assert suite.declaration["splits"] == {"train": 30, "fit": 9, "cal": 9, "seed": 0, "test": 12}
    d = suite.materialise(cache=cache_dir)
    assert (len(d.train), len(d.fit), len(d.cal), len(d.id_test)) == (30, 9, 9, 12)
    assert d.id_test.x.shape[1:] == (16, 16, 3) and d.tests[0].images.x.shape == (10, 16, 16, 3)
    assert set(d.id_test.y) <= {0, 1, 2} and (d.tests[0].images.y == -1).all()
    again = oodbench.Suite.from_file(tmp_path / "s.toml").materialise(cache=cache_dir)
    assert again.checksums == d.checksums


def test_labels_need_class_sub_folders(example, cache_dir, capsys):
    err = _run_bad(example, GOOD.replace('path = "images/stripes"', 'path = "images/stripes"\nlabels = true'),
                   cache_dir, capsys)
    assert "images/stripes: labels (of an ID set, or a test set with labels = true) need every image in" in err


def test_folder_layouts(tmp_path):
    """Class sub-folders (images at any depth, an empty one still a class); images mixed with folders are one
    unlabelled set; hidden files and non-image files are skipped."""
    from PIL import Image

    from oodbench.benchmark.data import user_images

    def img(p):
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (5, 7), (200, 10, 10)).save(p)

    img(tmp_path / "a" / "b" / "deep" / "1.PNG")
    img(tmp_path / "a" / "a" / "2.jpg")
    (tmp_path / "a" / "c").mkdir()
    (tmp_path / "a" / "a" / "notes.txt").write_text("not an image")
    img(tmp_path / "a" / "a" / ".hidden.png")
    names, files = user_images.folder_layout(tmp_path / "a")
    assert names == ["a", "b", "c"] and [len(f) for f in files] == [1, 1, 0]
    img(tmp_path / "a" / "loose.png")
    names, files = user_images.folder_layout(tmp_path / "a")
    assert names == [""] and len(files[0]) == 3
    s = user_images.load({"path": str(tmp_path / "a")}, (4, 4), "x", labels=False)
    assert s.x.shape == (3, 4, 4) and s.x.dtype == np.uint8 and (s.y == -1).all()


def test_tuned_mode_needs_an_ood_validation_set(example, cache_dir, capsys):
    rc, out, err = _cli(["run", str(example / "suite.toml"), "--detectors", *DETS, "-q", "--tuning", "tuned",
                         "--cache-dir", str(cache_dir), "--out", str(example / "tuned")], capsys)
    assert rc == 2 and "--tuning tuned needs an OOD validation set" in err and err.count("\n") == 1
