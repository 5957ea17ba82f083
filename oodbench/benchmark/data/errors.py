"""The errors of the data layer, and the fix-it hint every one of them carries.

A data error always names the file, says what is wrong with it and how to get a good copy; the hint
names a command that exists (``oodbench download NAME --data-dir DIR``).
"""
from __future__ import annotations

import shlex


class DatasetError(RuntimeError):
    """A dataset file is missing, cannot be decoded or fails its checksum."""


class DatasetUnavailable(DatasetError):
    """An optional dataset is not present; the suite skips it with this reason."""


class DownloadError(DatasetError):
    """A source archive could not be fetched (offline, server error) or failed its published checksum."""


class FormatError(ValueError):
    """A file's bytes are not what its format promises; the caller names the file and the fix."""


HOW_TO_GET = (
    "To get it, run `oodbench download {name} --data-dir {root}` (needs the network; "
    "`oodbench download all` fetches every built-in set), or point --data-dir (or $OODBENCH_DATA) at a "
    "folder laid out like ../shared/data (see its README)."
)


def how_to_get(name: str, root) -> str:
    """The fix-it sentence for dataset ``name`` (a name ``oodbench download`` accepts) in folder ``root``."""
    return HOW_TO_GET.format(name=name, root=shlex.quote(str(root)))
