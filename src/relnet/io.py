"""Files: atomic writes (a reader never sees a half-written file, and a failed write leaves none),
byte-deterministic .npz archives of named arrays (no pickle), checked reads of .npz, JSON and
image files, and directory locks."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from relnet.errors import ConfigError, DataError, shown

# Images larger than this are refused before they are decoded (CLEVR's are 480 x 320): a small
# file can declare a huge image (a decompression bomb).
MAX_IMAGE_PIXELS = 4096 * 4096

# Earliest date a zip entry can hold; a fixed stamp keeps identical arrays byte-identical on disk.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike):
    """A binary file to write, open on a temporary file beside ``path`` and renamed into place when
    the block ends; removed if the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(binary_file)`` on a temporary file beside ``path``, then rename it into place."""
    with atomic_file(path) as file:
        write(file)


def write_json(path: str | os.PathLike, data) -> None:
    atomic_write(path, lambda file: file.write((json.dumps(data, indent=2) + "\n").encode()))


@contextlib.contextmanager
def json_list_writer(path: str | os.PathLike, head: dict, key: str):
    """Write ``{**head, key: [items]}`` to ``path`` an item at a time (``append(item)``), byte for byte
    as write_json writes the whole object, so that a list of any length takes no memory; atomic
    like write_json: the file appears complete when the block ends, or not at all."""
    if not head or key in head:
        raise ValueError("json_list_writer needs a non-empty head without the list's key")
    items = 0
    with atomic_file(path) as file:
        file.write((json.dumps(head, indent=2)[:-2] + f",\n  {json.dumps(key)}: [").encode())

        def append(item) -> None:
            nonlocal items
            indented = "\n".join("    " + line for line in json.dumps(item, indent=2).split("\n"))
            file.write(((",\n" if items else "\n") + indented).encode())
            items += 1

        yield append
        file.write(("\n  ]\n}\n" if items else "]\n}\n").encode())


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
    if not path.is_file():
        raise DataError(f"{path}: not a regular file; {how_to_make}")
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
                _check_member_size(archive.zip, f"{key}.npy" if f"{key}.npy" in archive.zip.namelist() else key)
                arrays[key] = archive[key]
            except (OSError, ValueError, EOFError, KeyError, MemoryError, zipfile.BadZipFile, zlib.error) as error:
                raise DataError(f"{path}: key '{key}' cannot be read ({type(error).__name__}: {error})") from None
    return arrays


def _check_member_size(archive: zipfile.ZipFile, member: str) -> None:
    """Refuse an array whose header declares more data than the member holds, before numpy
    allocates it (a few bytes can declare an array of hundreds of GiB). The member's stated size
    is the archive's word, so it is also held to what its compressed bytes can expand to."""
    info = archive.getinfo(member)
    expandable = info.compress_size * 1032 if info.compress_type == zipfile.ZIP_DEFLATED else info.compress_size
    if info.file_size > expandable:
        raise ValueError(f"it claims {info.file_size:,} bytes, more than its {info.compress_size:,} stored bytes can hold")
    with archive.open(info) as file:
        version = np.lib.format.read_magic(file)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(file)
        if dtype.hasobject:
            raise ValueError("it holds Python objects, which relnet never reads (no pickle)")
        declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if declared > info.file_size:
            raise ValueError(f"its header declares {declared:,} bytes of {dtype} {shape} but it holds "
                             f"{info.file_size:,}")


MAX_JSON_BYTES = 4 * 1024 ** 3  # CLEVR's largest file (train questions) is about 0.9 GB
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def checked_name(value, what: str, kind: str = "name") -> str:
    """A name that becomes part of a file name (a split, a model): letters, digits, '-' and '_'
    only, so it can never name another directory."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ConfigError(f"{what}: {kind} {shown(value)} is not allowed: expected 1 to 64 letters, digits, '-' or '_'")
    return value


def read_json_file(path: str | os.PathLike, what: str, max_bytes: int = MAX_JSON_BYTES):
    """A JSON file (``what`` says which), or a DataError naming it: a regular file (a FIFO would
    block, a device never end), at most ``max_bytes``, UTF-8, valid JSON."""
    return _parse_small_file(path, what, max_bytes, json.loads)


def read_config_file(path: str | os.PathLike, what: str):
    """A JSON (``.json``) or TOML (``.toml``) file of settings, or a DataError naming it."""
    if Path(path).suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise DataError(f"{path}: TOML needs Python 3.11 or newer; give the {what} as JSON") from None
        return _parse_small_file(path, what, MAX_JSON_BYTES, tomllib.loads)
    return read_json_file(path, what)


def _parse_small_file(path: str | os.PathLike, what: str, max_bytes: int, parse):
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file ({what})")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file ({what})")
    if path.stat().st_size > max_bytes:
        raise DataError(f"{path}: {path.stat().st_size:,} bytes; at most {max_bytes:,} are read ({what})")
    try:
        return parse(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as error:  # (TOMLDecodeError is a ValueError)
        raise DataError(f"{path}: not a valid {what} ({type(error).__name__}: {str(error)[:200]})") from None


def read_image(source, size: int, name: str, formats: tuple[str, ...] = ("PNG",)) -> np.ndarray:
    """An image file (path or binary file) as uint8 RGB [size, size, 3], or a DataError naming
    ``name``: a file of none of ``formats`` (Pillow's names) is refused before it is decoded (Pillow
    would otherwise try every format it knows: EPS runs Ghostscript), images over MAX_IMAGE_PIXELS
    too, and 16-bit grayscale is scaled to 8 bits (converting it straight to RGB would clip it to white)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, (str, os.PathLike)) and Path(source).exists() and not Path(source).is_file():
        raise DataError(f"{name}: not a regular file")  # a FIFO or device would block or never end
    try:
        with Image.open(source, formats=formats) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise DataError(f"{name}: a {image.width} x {image.height} image; at most {MAX_IMAGE_PIXELS:,} "
                                f"pixels are read")
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                gray = np.asarray(image, dtype=np.float64) / 257.0  # 0..65535 -> 0..255
                image = Image.fromarray(np.clip(np.rint(gray), 0, 255).astype(np.uint8), mode="L")
            return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    except FileNotFoundError:
        raise DataError(f"{name}: image missing") from None
    except UnidentifiedImageError:
        raise DataError(f"{name}: image unreadable: not a {' or '.join(formats)} file (the only "
                        f"format{'s' * (len(formats) > 1)} read here; others are refused before decoding)") from None
    except DataError:
        raise
    except Exception as error:  # PIL raises many types (and DecompressionBombError) for bad files
        raise DataError(f"{name}: image unreadable ({type(error).__name__}: {error})") from None


@contextlib.contextmanager
def directory_lock(directory: str | os.PathLike, what: str):
    """Hold ``directory/.lock`` for the duration: a second relnet process that wants the same
    directory is refused at once instead of interleaving its files with ours. The lock is the
    kernel's (flock), so a killed process releases it. The lock file holds our pid and ``what``
    (the command holding it), which a refused process names. A directory made for the lock and
    left empty (the command failed before writing) is removed again."""
    directory = Path(directory)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:  # never through a link: a planted .lock -> elsewhere must not be written
        descriptor = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        raise ConfigError(f"{directory / '.lock'}: cannot be used as a lock file ({error.strerror})") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise ConfigError(f"{directory / '.lock'}: not a regular file; remove it")
    with os.fdopen(descriptor, "r+", errors="replace") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{directory}: in use by another relnet process ({_lock_holder(file)}); wait for it "
                              f"or choose another directory") from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()} {what}")
        file.flush()
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # another process may be taking the directory now
                if created and [path.name for path in directory.iterdir()] == [".lock"]:
                    (directory / ".lock").unlink()
                    directory.rmdir()
            fcntl.flock(file, fcntl.LOCK_UN)


def lock_holder(directory: str | os.PathLike) -> str | None:
    """The relnet process holding ``directory``'s lock ("pid PID, COMMAND"), or None when none does."""
    try:  # (non-blocking: a FIFO planted as .lock must not hang us)
        descriptor = os.open(Path(directory) / ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # no lock file, a link or a directory: nobody took the directory as relnet does
        return None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        return None
    with os.fdopen(descriptor, errors="replace") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _lock_holder(file)
        fcntl.flock(file, fcntl.LOCK_UN)
        return None


def _lock_holder(file) -> str:
    """The process holding a lock, as it wrote itself into the lock file: "pid PID, COMMAND"."""
    file.seek(0)
    pid, _, command = file.read(200).strip().partition(" ")  # (a file written by another program: its start)
    return f"pid {pid or '?'}, {command or 'command unknown'}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
