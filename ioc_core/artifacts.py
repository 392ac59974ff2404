"""Cache of heavy build artefacts (Asterisk chroot, Rasa env, speech models) under
IOC_CACHE_DIR, keyed by everything that went into them.

An artefact lives in `<cache>/<name>-<key>/`; the key is a hash of its inputs (versions,
package lists, file contents), so changing an input builds a new one and the stale copies are
removed. Builds go to a temporary folder that is renamed into place only when complete, under
a file lock, so a crashed or concurrent build never leaves a half artefact behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

Inputs = Mapping[str, str | bytes | Path]
MARKER = ".complete"


def input_key(inputs: Inputs) -> str:
    """A short stable digest of the inputs; files count by their contents."""
    h = hashlib.sha256()
    for name in sorted(inputs):
        value = inputs[name]
        data = (
            value.read_bytes()
            if isinstance(value, Path)
            else value
            if isinstance(value, bytes)
            else value.encode()
        )
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()[:16]


class ArtifactCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str, inputs: Inputs) -> Path:
        return self.root / f"{name}-{input_key(inputs)}"

    def is_fresh(self, name: str, inputs: Inputs) -> bool:
        return (self.path(name, inputs) / MARKER).exists()

    def ensure(
        self, name: str, inputs: Inputs, build: Callable[[Path], None], *, keep_stale: bool = False
    ) -> Path:
        """The artefact's folder, built by `build(tmp_folder)` when absent or stale. Other
        versions are removed, unless `keep_stale` (small artefacts that several checkouts or
        a running hub may still be using)."""
        final = self.path(name, inputs)
        if (final / MARKER).exists():
            return final
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same
            if (final / MARKER).exists():
                return final
            tmp = self.root / f".{final.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            try:
                logger.info("building %s into %s", name, final)
                build(tmp)
                (tmp / MARKER).write_text(final.name)
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            if not keep_stale:
                self._remove_stale(name, keep=final)
        return final

    def _remove_stale(self, name: str, *, keep: Path) -> None:
        for old in self.root.glob(f"{name}-*"):
            if old == keep or not old.is_dir():
                continue
            if mounts_under(old):
                # A chroot still in use has /proc and /dev bound inside: deleting through a
                # bind mount of /dev would delete the host's device nodes. Leave it.
                logger.warning("not removing stale %s: something is mounted inside it", old)
                continue
            logger.info("removing stale %s", old)
            shutil.rmtree(old, ignore_errors=True)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` (from /proc/mounts)."""
    base = str(path.resolve())
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[1].replace("\\040", " ") for line in lines if len(line.split()) > 1]
    return [p for p in points if p == base or p.startswith(base + "/")]
