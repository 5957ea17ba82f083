"""`oodbench download NAME... [--data-dir DIR]`: fetch datasets from their public sources (needs the network).

    oodbench download all --data-dir DIR         # every set the built-in suites use
    oodbench download cifar100 svhn places365    # the optional sets (Places365: a 2.2 GB archive)

Each archive is shown with a progress bar (on a terminal), checked against its published MD5 and converted
into the layout of ../shared/data (see ``oodbench/benchmark/data/download.py`` for what differs from the
offline copy). Sets already present and verified are skipped (``--force`` fetches them again). A failure
(offline, server error) is one line per dataset, not a traceback; the exit status is 1 if any failed.
"""
from __future__ import annotations

import sys


def add_parser(sub) -> None:
    from oodbench.benchmark.data.sources import OPTIONAL, REQUIRED

    d = sub.add_parser("download", help="fetch datasets from their public sources into the data folder (online)",
                       description=__doc__.split("\n\n")[0])
    d.add_argument("names", nargs="+", type=str.lower, choices=("all", *REQUIRED, *OPTIONAL), metavar="NAME",
                   help=f"all (= {' '.join(REQUIRED)}) or dataset names, also the optional {' '.join(OPTIONAL)}")
    d.add_argument("--data-dir", default=None, help="dataset folder (default $OODBENCH_DATA or ../shared/data, "
                                                    "else ~/.cache/oodbench/data)")
    d.add_argument("--keep-archives", action="store_true", help="keep the fetched archives in DIR/_archives")
    d.add_argument("--force", action="store_true", help="fetch even the sets that are present and verified")
    d.set_defaults(fn=run)


def _size(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB" if n >= 2 ** 20 else f"{n / 1024:.0f} KiB"


def run(a) -> int:
    from oodbench.benchmark import config
    from oodbench.benchmark.data import manifest
    from oodbench.benchmark.data.download import download

    root = config.data_dir(a.data_dir)
    print(f"data folder: {root}")
    results = download(a.names, root, keep_archives=a.keep_archives, force=a.force, progress=sys.stderr.isatty())
    print("\nsummary:")
    for r in results:
        if r.status == "written":
            files = ", ".join(f"{rel} ({_size(n)})" for rel, n in r.files)
            print(f"  {r.name:<13} written: {files}" + (f" [{r.note}]" if r.note else ""))
        elif r.status == "present":
            print(f"  {r.name:<13} already present (checksums verified)")
        else:
            print(f"  {r.name:<13} FAILED (see the error below)")
            print(f"oodbench download: error: {r.name}: {r.error}", file=sys.stderr)
    if any(r.status == "written" for r in results):
        print(f"sources and checksums recorded in {root / manifest.NAME}")
    return 1 if any(r.status == "failed" for r in results) else 0
