"""Our table of OpenOOD's default hyperparameters (facts read from its ``configs/postprocessors/*.yml``; no
file is copied or downloaded), the install instructions, and the constants of the adapter."""
from __future__ import annotations

INSTALL = (
    "OpenOOD is not installed (it is not on PyPI and needs numpy<2). Install it in its own virtualenv:\n"
    "  python3 -m venv ood-venv && ood-venv/bin/pip install torch torchvision 'numpy<2' 'pandas<3' "
    "'opencv-python<4.12' faiss-cpu statsmodels scikit-learn scipy pyyaml json5 imgaug tqdm matplotlib tabulate "
    "diffdist Cython\n"
    "  ood-venv/bin/pip install --no-build-isolation libmr\n"
    "  git clone https://github.com/Jingkang50/OpenOOD && ood-venv/bin/pip install --no-deps -e ./OpenOOD\n"
    "  ood-venv/bin/pip install --no-deps -e <oodbench checkout> pytorch-ood==0.4.0\n"
    "(see docs/openood.md)"
)
DATASET = "oodbench"
BATCH = 200  # OpenOOD's Evaluator default


# --- our table of OpenOOD defaults (facts from configs/postprocessors/<name>.yml at OpenOOD 3c35632) -----------
#: name -> class in openood.postprocessors, feed ("lookup": cached logits/features, "net": the classifier,
#: "ash"/"scale": the cached features inside OpenOOD's ASHNet/ScaleNet), args, sweep (APS grid), APS flag
SPECS = {
    "msp": dict(cls="BasePostprocessor", feed="lookup", args={}, sweep={}, aps=False),
    "temp_scaling": dict(cls="TemperatureScalingPostprocessor", feed="lookup", args={}, sweep={}, aps=False),
    "ebo": dict(cls="EBOPostprocessor", feed="lookup", args={"temperature": 1}, sweep={"temperature_list": [1]},
                aps=True),
    "mls": dict(cls="MaxLogitPostprocessor", feed="lookup", args={}, sweep={}, aps=False),
    "odin": dict(expensive=True, cls="ODINPostprocessor", feed="net", args={"temperature": 1000, "noise": 0.0014},
                 sweep={"temperature": [1, 10, 100, 1000], "noise": [0.0014, 0.0028]}, aps=True, gradients=True),
    "gen": dict(cls="GENPostprocessor", feed="lookup", args={"gamma": 0.1, "M": 100},
                sweep={"gamma_list": [0.01, 0.1, 0.5, 1, 2, 5, 10], "M_list": [10, 50, 100, 200, 500, 1000]},
                aps=True),
    "klm": dict(expensive=True, cls="KLMatchingPostprocessor", feed="lookup", args={}, sweep={}, aps=False),
    "mds": dict(cls="MDSPostprocessor", feed="lookup", args={}, sweep={}, aps=False),
    "rmds": dict(cls="RMDSPostprocessor", feed="lookup", args={}, sweep={}, aps=False),
    "knn": dict(cls="KNNPostprocessor", feed="lookup", args={"K": 50}, sweep={"K_list": [50, 100, 200, 500, 1000]},
                aps=True),
    "vim": dict(cls="VIMPostprocessor", feed="lookup", args={"dim": 256}, sweep={"dim_list": [256, 1000]}, aps=True,
                notes="dim must be < D: 256 if D > 256 else D // 2 (all-NaN scores otherwise)"),
    "react": dict(cls="ReactPostprocessor", feed="lookup", args={"percentile": 90},
                  sweep={"percentile_list": [85, 90, 95, 99]}, aps=True),
    "ash": dict(cls="ASHPostprocessor", feed="ash", args={"percentile": 90},
                sweep={"percentile_list": [65, 70, 75, 80, 85, 90, 95]}, aps=True,
                notes="through openood.networks.ash_net.ASHNet (ash_b on pooled features)"),
    "scale": dict(cls="ScalePostprocessor", feed="scale", args={"percentile": 85},
                  sweep={"percentile_list": [65, 70, 75, 80, 85, 90, 95]}, aps=True,
                  notes="through openood.networks.scale_net.ScaleNet (on pooled features)",
                  toy="percentile 85 keeps 2 of 16 toy features: flat OOD features get a larger scale (e^8) "
                      "than the 4-hot ID features (e^2), so the energy ranks them as ID"),
    "dice": dict(cls="DICEPostprocessor", feed="lookup", args={"p": 90}, sweep={"p_list": [90]}, aps=False,
                 toy="p=90 keeps 6 of the toy head's 64 weights, so some classes lose all their evidence"),
    "she": dict(cls="SHEPostprocessor", feed="lookup", args={"metric": "inner_product"}, sweep={}, aps=False),
    "gradnorm": dict(expensive=True, cls="GradNormPostprocessor", feed="lookup", args={}, sweep={}, aps=False, gradients=True,
                     notes="gradient of the fc layer only, one sample at a time"),
    "rankfeat": dict(expensive=True, spatial_maps=True, cls="RankFeatPostprocessor", feed="net", args={"accelerate": False, "temperature": 1},
                     sweep={}, aps=False, notes="block 3 = block 4 = model.feature_maps, layer4 = identity, "
                     "avgpool = the classifier's own pool (max × 1/9 on airbench)",
                     toy="the toy's maps are 1x1: removing the rank-1 part leaves zeros"),
    "gram": dict(expensive=True, cls="GRAMPostprocessor", feed="net", args={"powers": [1, 2, 3, 4, 5]},
                 sweep={"powers_list": [[1, 2, 3, 4, 5]]}, aps=True,
                 notes="hooks every nn.Conv2d / nn.ReLU module (functional relu is invisible)"),
    "nnguide": dict(cls="NNGuidePostprocessor", feed="lookup", args={"alpha": 0.01, "K": 100},
                    sweep={"K_list": [100], "alpha_list": [0.01]}, aps=False,
                    notes="bank = the first loader batches covering alpha*N samples (batch-size dependent)"),
    "fdbd": dict(cls="fDBDPostprocessor", feed="lookup", args={"distance_as_normalizer": True},
                 sweep={"distance_as_normalizer_list": [True, False]}, aps=True),
    "nci": dict(cls="NCIPostprocessor", feed="lookup", args={"alpha": 0.0001},
                sweep={"alpha_list": [0.0001, 0.001, 0.01, 0.1]}, aps=True),
    "openmax": dict(expensive=True, cls="OpenMax", feed="lookup", args={}, sweep={}, aps=False,
                    toy="Weibull tails fitted on 60 samples per class of a 4-class toy"),
    "relation": dict(cls="RelationPostprocessor", feed="lookup", args={"pow": 1}, sweep={"pow_list": [1, 2, 4, 6, 8]},
                     aps=True),
    "vra": dict(cls="VRAPostprocessor", feed="lookup", args={"percentile_high": 90, "percentile_low": 10},
                sweep={"percentile_high_list": [85, 90, 95, 99], "percentile_low_list": [1, 5, 10, 15]}, aps=True),
}
