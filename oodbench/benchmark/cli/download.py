"""`oodbench download NAME ...`: fetch datasets into the data folder (needs the network)."""
from __future__ import annotations


def add_parser(sub) -> None:
    d = sub.add_parser("download", help="download MNIST / FashionMNIST / CIFAR-10 via torchvision (online)")
    d.add_argument("names", nargs="+", choices=["mnist", "fashionmnist", "cifar10"])
    d.add_argument("--data-dir", default=None)
    d.set_defaults(fn=run)


def run(a):
    from oodbench.benchmark import config
    from oodbench.benchmark import data

    root = config.data_dir(a.data_dir)
    for n in a.names:
        print(f"downloading {n} into {root} via torchvision ...")
        data.download(n, root)
    return 0
