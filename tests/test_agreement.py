"""The agreement table's text and files (no OpenOOD needed): reasons per classifier, merge of rows."""
import numpy as np
import pandas as pd

from oodbench.benchmark.evaluation import agreement as ag


def test_library_reasons_name_no_classifier_and_classifier_notes_are_appended():
    for method, text in ag.REASONS.items():
        assert "LeNet" not in text and "airbench" not in text, method
    assert "1×1" in ag.reason("RankFeat", "lenet")
    assert "1×1" not in ag.reason("RankFeat", "airbench")
    assert ag.reason("ViM", "airbench").endswith("d = 128 of the 256 pooled features")
    assert ag.reason("MSP", "airbench") == ag.REASONS["MSP"]
    from oodbench.adapters.common import vim_dim

    for arch, d in (("airbench", 256), ("airbench_wide", 384)):  # the notes say what the adapters do
        assert ag.reason("ViM", arch).endswith(f"d = {vim_dim(d)} of the {d} pooled features")
    assert ag.reason("MSP", None) == ag.REASONS["MSP"]


def _rows(method, value):
    return [{"method": method, "pytorch_ood": "p", "openood": "o", "test_set": t, "group": g, "n": 4,
             "spearman": value, "auroc_pytorch_ood": np.nan if t == "id" else 0.5,
             "auroc_openood": np.nan if t == "id" else 0.5, "auroc_diff": np.nan if t == "id" else 0.0}
            for t, g in [("id", "id"), ("near1", "near")]]


def test_merge_replaces_a_methods_rows_keeps_the_others_and_pairs_order(tmp_path):
    ag.write(tmp_path, pd.DataFrame(_rows("MSP", 1.0) + _rows("RankFeat", -0.1) + _rows("GradNorm", 0.7)),
             "s", 0, "airbench")
    df = ag.merge(tmp_path, pd.DataFrame(_rows("RankFeat", 0.9) + _rows("SCALE", 0.8)), "s", 0, "airbench",
                  note="RankFeat and SCALE recomputed")
    assert list(dict.fromkeys(df["method"])) == ["MSP", "SCALE", "RankFeat", "GradNorm"]
    assert (df.loc[df["method"] == "RankFeat", "spearman"] == 0.9).all()
    back = pd.read_csv(tmp_path / "agreement.csv")
    assert len(back) == 8
    md = (tmp_path / "agreement.md").read_text()
    assert "RankFeat and SCALE recomputed" in md and "(seed 0, airbench)" in md
    assert md.count("| RankFeat |") == 1
