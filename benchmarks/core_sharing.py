"""How much two single-threaded processes gain over one on this machine (the ceiling of ``--jobs 2``).

Runs one fixed, single-threaded torch workload (a LeNet-sized forward and backward pass, the kind of
arithmetic the mnist grid is made of; or a float32 matrix product) in one process alone, then in two
processes side by side, and prints each time and the throughput gain of two processes over one:
``2 * t_alone / t_side_by_side``. Two independent cores give about 2.0; cores that share their execution
units or memory bandwidth give less, and no scheduler of the job grid can beat that figure. Measure it on
an idle machine:

    python benchmarks/core_sharing.py [--workload conv|matmul] [--seconds 20]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time


def _work(kind: str, steps: int) -> float:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    if kind == "matmul":
        a, b = torch.randn(512, 512), torch.randn(512, 512)
        step = lambda: a @ b  # noqa: E731
    else:
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 20, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                  torch.nn.Conv2d(20, 50, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                  torch.nn.Flatten(), torch.nn.Linear(800, 500), torch.nn.ReLU(),
                                  torch.nn.Linear(500, 10))
        x = torch.randn(128, 1, 28, 28)

        def step():
            net.zero_grad()
            net(x).sum().backward()
    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - t0


def _child(kind, steps, start, q):
    import torch  # noqa: F401  (imported before the start signal, so both timed loops begin together)

    start.wait()
    q.put(_work(kind, steps))


def _side_by_side(kind: str, steps: int, n: int) -> list[float]:
    ctx = mp.get_context("spawn")
    start, q = ctx.Event(), ctx.Queue()
    ps = [ctx.Process(target=_child, args=(kind, steps, start, q)) for _ in range(n)]
    for p in ps:
        p.start()
    time.sleep(3)  # let every child import torch and reach the start signal
    start.set()
    out = [q.get() for _ in ps]
    for p in ps:
        p.join()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=["conv", "matmul"], default="conv")
    ap.add_argument("--seconds", type=float, default=20.0, help="about how long the lone run takes")
    a = ap.parse_args(argv)
    probe = _work(a.workload, 5) / 5
    steps = max(5, int(a.seconds / probe))
    alone = _side_by_side(a.workload, steps, 1)[0]
    pair = _side_by_side(a.workload, steps, 2)
    slow = max(pair) / alone
    print(f"{a.workload}: {steps} steps, one thread per process")
    print(f"alone              : {alone:7.2f} s")
    print(f"two side by side   : {pair[0]:7.2f} s and {pair[1]:7.2f} s  ({slow:.2f}x slower each)")
    print(f"throughput gain of two processes over one: {2 * alone / max(pair):.2f}x (independent cores: 2.00x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
