"""Files: atomic writes (a reader never sees a half-written file, and a failed write leaves none)
and byte-deterministic .npz archives of named arrays (no pickle)."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from relnet.errors import DataError

# Earliest date a zip entry can hold; a fixed stamp keeps identical arrays byte-identical on disk.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(binary_file)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data) -> None:
    atomic_write(path, lambda file: file.write((json.dumps(data, indent=2) + "\n").encode()))


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to a deflated .npz at ``path``, atomically and byte-identically for identical arrays."""
    def write(file):
        with zipfile.ZipFile(file, "w") as archive:
            for name in sorted(arrays):
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                # Streamed into the archive member, so large arrays are never copied in memory.
                with archive.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asarray(arrays[name]), allow_pickle=False)

    atomic_write(path, write)


def load_npz(path: str | os.PathLike, keys: Sequence[str], how_to_make: str) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an .npz file, or a DataError naming the file and what is wrong
    (``how_to_make`` tells the user how to write the file when it is missing)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; {how_to_make}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable .npz file ({error})") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: expected an .npz archive of named arrays, found a single .npy array")
    with archive:
        arrays = {}
        for key in keys:
            if key not in archive.files:
                raise DataError(f"{path}: missing key '{key}'; expected keys {', '.join(keys)}")
            try:
                arrays[key] = archive[key]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
                raise DataError(f"{path}: key '{key}' cannot be read ({error})") from error
    return arrays


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
