"""The CPU kind recorded with every trained checkpoint and run (oodbench.benchmark.machine)."""
import re

from oodbench.benchmark import machine

INFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 106
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
stepping\t: 6
cache size\t: 55296 KB
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw

processor\t: 1
flags\t\t: something else entirely
"""


def test_the_kind_follows_model_and_flags_not_core_count():
    a = machine.describe(INFO, "x86_64", 2)
    assert re.fullmatch(r"[0-9a-f]{16}", a["kind"])
    assert a["model_name"].startswith("Intel(R) Xeon(R) Platinum") and (a["family"], a["model"]) == ("6", "106")
    assert a["vector_flags"] == ["avx", "avx2", "avx512bw", "avx512f", "fma"]  # the first processor's block
    assert machine.describe(INFO, "x86_64", 64)["kind"] == a["kind"]
    assert machine.describe(INFO.replace(" avx512bw", ""), "x86_64", 2)["kind"] != a["kind"]
    assert machine.describe(INFO.replace("model\t\t: 106", "model\t\t: 143"), "x86_64", 2)["kind"] != a["kind"]


def test_without_cpuinfo_the_kind_still_exists():
    rec = machine.describe("", "arm64", 8)
    assert re.fullmatch(r"[0-9a-f]{16}", rec["kind"]) and "flags_sha256" not in rec


def test_this_machine():
    rec = machine.cpu()
    assert rec is machine.cpu() and re.fullmatch(r"[0-9a-f]{16}", rec["kind"])
