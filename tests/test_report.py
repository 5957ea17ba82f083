"""`oodbench report`: built from results files alone, deterministic, self-contained HTML that renders in
a real headless browser (skipped, with the reason, when chromium is not installed)."""
import base64
import json
import re
import shutil
import subprocess

import pytest

from oodbench.benchmark.reporting import SuiteResults, leaderboard, leaderboard_markdown, write_reports

EASE = {
    "timestamp": "2026-01-01T00:00:00Z",
    "environment": {"python": "3.11", "cpu_threads": 1},
    "libraries": {"pytorch-ood": {
        "version": "0.4.0", "n_detectors": 2,
        "install": {"on_pypi": True, "n_declared_dependencies": 5, "added_packages": 1, "added_mb": 120.5,
                    "undeclared_imports": ["sklearn"], "pin_conflicts": []},
        "import": {"median_s": 1.5, "runs": [1.4, 1.5, 1.6], "statement": "import pytorch_ood"},
        "integration": {"adapter_code_lines": 90, "median_lines_per_detector": 1}}},
    "detectors": {
        "pytorch_ood.msp": {"library": "pytorch-ood", "consumes": ["logits"], "required_args": [],
                            "requirements": {"fit_data": False, "ood_tuning": False, "gradients": False,
                                             "gpu_only": False}, "network_at_construction": False,
                            "adapter_lines": 1, "probes": {"nan_input": {"outcome": "silent garbage"}}}},
    "quality": {"pytorch-ood": {"modules": 60, "code_lines": 5000, "size_kb": 700, "public_classes": 80,
                                "public_functions": 30, "docstring_coverage": 0.7, "type_hint_coverage": 0.5,
                                "test_files_shipped": 0, "hardcoded_cuda_calls": 0, "bare_excepts": 0,
                                "path": "site-packages/pytorch_ood"}},
    "facts": {"openood": [{"fact": "not on PyPI", "source": "https://github.com/Jingkang50/OpenOOD"}]},
}


@pytest.fixture(scope="module")
def results_dir(data_dir, cache_dir, mnist_smoke, tmp_path_factory):
    from oodbench.benchmark.evaluation import runner

    root = tmp_path_factory.mktemp("results")
    runner.evaluate("mnist-smoke", ["pytorch_ood.msp", "pytorch_ood.energy"], seeds=(0,), data_dir=data_dir,
                    cache_dir=cache_dir, out=root / "mnist-smoke", threads=1, n_boot=20, progress=False)
    (root / "ease").mkdir()
    (root / "ease" / "ease.json").write_text(json.dumps(EASE))
    return root


@pytest.fixture(scope="module")
def built(results_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    paths = write_reports(results_dir, out)
    return out, paths


def test_reports_written(built):
    out, paths = built
    names = {p.relative_to(out).as_posix() for p in paths}
    assert {"mnist-smoke/report.md", "mnist-smoke/report.html", "comparison.md", "comparison.html",
            "mnist-smoke/figures/auroc_heatmap.png", "mnist-smoke/figures/roc_groups.png",
            "mnist-smoke/figures/roc_sets.png", "mnist-smoke/figures/score_histograms.png",
            "mnist-smoke/figures/speed_vs_auroc.png", "mnist-smoke/figures/cd_diagram.png"} <= names
    md = (out / "mnist-smoke" / "report.md").read_text()
    for section in ("## Leaderboard", "## Per test set", "AUROC per test set", "## Figures", "## Cost",
                    "## Ease of use", "## Code quality", "near AUROC CI", "pytorch_ood.energy"):
        assert section in md
    comp = (out / "comparison.md").read_text()
    for section in ("## 1. Ease of use", "## 2. Performance", "## 3. Robustness", "## 4. Code quality",
                    "not on PyPI", "silent garbage"):
        assert section in comp


def test_report_is_deterministic(results_dir, built, tmp_path):
    out, paths = built
    write_reports(results_dir, tmp_path)
    for p in paths:
        q = tmp_path / p.relative_to(out)
        assert q.read_bytes() == p.read_bytes(), f"{p.name} differs between two builds"


def test_html_is_self_contained(built):
    out, _ = built
    page = (out / "mnist-smoke" / "report.html").read_text()
    assert not re.search(r"""(src|href)=["'](https?:|//|file:)""", page)
    assert "<link" not in page and "@import" not in page
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) == len(list((out / "mnist-smoke" / "figures").glob("*.png"))) >= 6  # incl. cd_diagram.png
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in imgs)
    assert 'table class="sortable" id="leaderboard"' in page


def test_leaderboard_values_match_results(results_dir):
    res = SuiteResults(results_dir / "mnist-smoke")
    lb = leaderboard(res.df, res.record)
    df = res.df
    for _, r in lb.iterrows():
        v = df[(df["detector"] == r["detector"]) & (df["test_set"] == "near-mean") & (df["metric"] == "auroc")]
        assert r["near:auroc"] == pytest.approx(v["value"].mean())
        assert r["near:auroc:lo"] <= r["near:auroc:hi"]
    assert list(lb["near:auroc"]) == sorted(lb["near:auroc"], reverse=True)


def test_one_leaderboard_for_run_output_and_report(results_dir):
    """leaderboard.md (written by `oodbench run`) lists the detectors in the report's leaderboard order,
    and that order does not depend on the order of the rows in results.csv."""
    res = SuiteResults(results_dir / "mnist-smoke")
    lb = leaderboard(res.df, res.record)
    md = leaderboard_markdown(res.df, res.record)
    pos = [md.index(f"| {d} ") for d in lb["detector"]]
    assert pos == sorted(pos) and len(pos) == 2
    shuffled = res.df.sample(frac=1.0, random_state=0)
    assert list(leaderboard(shuffled, res.record)["detector"]) == list(lb["detector"])


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var loaded = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var t = document.getElementById("leaderboard");
  var rowsOf = function () { return Array.prototype.map.call(t.tBodies[0].rows,
      function (r) { return r.cells[1].textContent; }).join(","); };
  var before = rowsOf();
  t.tHead.rows[0].cells[1].click();  // sort by detector name, ascending
  var asc = rowsOf();
  t.tHead.rows[0].cells[1].click();  // and descending
  var desc = rowsOf();
  var sorted = asc.split(",").slice().sort().join(",") === asc && asc.split(",").reverse().join(",") === desc;
  document.title = "PROBE imgs=" + imgs.length + " loaded=" + loaded + " tables=" +
      document.querySelectorAll("table").length + " sorted=" + sorted + " before=" + before;
});
</script></body>"""


def test_page_renders_in_headless_chromium(built, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's `chromium` package when apt is available)")
    out, _ = built
    page = (out / "mnist-smoke" / "report.html").read_text().replace("</body>", PROBE)
    f = tmp_path / "probe.html"
    f.write_text(page)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0",
             f"--user-data-dir={tmp_path / 'profile'}"]
    r = subprocess.run([exe, *flags, "--virtual-time-budget=5000", "--dump-dom", f.as_uri()], capture_output=True,
                       text=True, timeout=120)
    m = re.search(r"<title>PROBE imgs=(\d+) loaded=(\d+) tables=(\d+) sorted=(\w+)", r.stdout)
    assert m, f"page did not load or the probe did not run; stderr: {r.stderr[-2000:]}"
    imgs, loaded, tables, srt = int(m[1]), int(m[2]), int(m[3]), m[4]
    n_figures = len(list((out / "mnist-smoke" / "figures").glob("*.png")))  # every figure is embedded
    assert imgs == n_figures >= 6 and loaded == imgs, f"{loaded} of {imgs} images loaded ({n_figures} figures)"
    assert tables >= 5
    assert srt == "true", "clicking the detector header did not sort the leaderboard"
    console = [ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln]
    assert not console, f"console messages: {console}"
    # and a screenshot renders
    shot = tmp_path / "p.png"
    subprocess.run([exe, *flags, f"--screenshot={shot}", "--window-size=1400,2000",
                    (out / "mnist-smoke" / "report.html").as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10000


def test_openood_mnist_comparison_reads_both_summaries(tmp_path):
    """The mnist report's comparison with OpenOOD's published table: per method published / OpenOOD's
    LeNet here / our LeNet, far = mean over the published far sets we have."""
    import pandas as pd

    from oodbench.benchmark.reporting import published
    from oodbench.benchmark.reporting.documents import Doc

    def summary(v):
        sets = ["fashionmnist", "notmnist", "near-mean", *published.FAR_SETS]
        return pd.DataFrame([{"detector": "openood.msp", "metric": "auroc", "test_set": s, "mean": v, "n_seeds": 3}
                             for s in sets])

    for name, v in (("mnist", 0.97), ("mnist-openood", 0.9)):
        (tmp_path / name).mkdir()
        summary(v).to_csv(tmp_path / name / "summary.csv", index=False)
    (tmp_path / "mnist-openood" / "gaps.md").write_text("Why the gaps.")
    assert published.measured(summary(0.9), "openood.msp") == {
        "fashionmnist": 90.0, "notmnist": 90.0, "near": 90.0, "far": 90.0, "n_seeds": 3}
    doc = Doc("t")
    published.section(doc, tmp_path / "mnist")
    md = doc.render_md()
    assert "| MSP      | 94.62 / 90.00 / 97.00 |" in md and "Why the gaps." in md and "mean of 3 seeds" in md
    assert "| ODIN     | 96.55 / – / – " in md
    empty = Doc("t")
    published.section(empty, tmp_path / "mnist-openood")  # only the mnist report has it
    assert "OpenOOD's published" not in empty.render_md()


def test_leaderboard_warns_about_a_classifier_seed_that_diverged():
    import pandas as pd

    from oodbench.benchmark.reporting.leaderboard import weak_seed_warning

    rows = [{"detector": "classifier", "metric": "accuracy", "test_set": "id", "status": "ok", "seed": s, "value": v}
            for s, v in ((0, 0.9886), (1, 0.1135), (2, 0.9868))]
    msg = weak_seed_warning(pd.DataFrame(rows))
    assert "seed 1 reaches 11.35 %" in msg and "98.86 %" in msg
    assert weak_seed_warning(pd.DataFrame([r for r in rows if r["seed"] != 1])) == ""


def test_openood_cifar10_comparison_states_classifier_and_sets(tmp_path):
    """The cifar10 report's section against OpenOOD's published CIFAR-10 leaderboard: near = Tiny ImageNet,
    shared far = MNIST and DTD, all far = the suite's far mean; pytorch-ood / OpenOOD per cell; the
    classifier's accuracy and the missing sets stated."""
    import pandas as pd

    from oodbench.benchmark.reporting import published_cifar10 as pc
    from oodbench.benchmark.reporting.documents import Doc

    rows = [{"model": "airbench", "detector": "classifier", "metric": "accuracy", "test_set": "id",
             "mean": 0.8946, "std": 0.0012, "n_seeds": 3}]
    for det, v in (("pytorch_ood.msp", 0.8), ("openood.msp", 0.82), ("openood.relation", 0.7)):
        for s, shift in (("tinyimagenet", 0.0), ("mnist-rgb", 0.1), ("dtd", 0.05), ("far-mean", 0.02),
                         ("gaussian", -0.5)):
            rows.append({"model": "airbench", "detector": det, "metric": "auroc", "test_set": s, "mean": v + shift,
                         "std": 0.0, "n_seeds": 3})
    folder = tmp_path / "cifar10"
    folder.mkdir()
    pd.DataFrame(rows).to_csv(folder / "summary.csv", index=False)
    summary = pd.read_csv(folder / "summary.csv")
    assert pc.measured(summary, "openood.msp") == pytest.approx({"near": 82.0, "far": 89.5, "far_all": 84.0})
    assert pc.measured(summary, "pytorch_ood.energy") == {} and pc.measured(summary, None) == {}
    doc = Doc("t")
    pc.section(doc, folder)
    md = doc.render_md()
    assert "| MSP " in md and "88.03" in md and "80.00 / 82.00" in md and "87.50 / 89.50" in md
    assert "| Relation" in md and "– / 70.00" in md
    assert "| EBO" not in md  # no row without a measured value
    assert "`airbench`" in md and "89.46 ± 0.12 % (mean of 3 seeds)" in md and "CIFAR-100" in md
    assert "Places365" in md
    other = tmp_path / "mnist"
    other.mkdir()
    pd.DataFrame(rows).to_csv(other / "summary.csv", index=False)
    empty = Doc("t")
    pc.section(empty, other)  # only cifar10 reports have it
    assert "CIFAR-10 leaderboard" not in empty.render_md()
