"""Fetching and unpacking the official bAbI v1.2 archive, for users with internet."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

from tqdm import tqdm

from relnet.errors import DataError

OFFICIAL_URL = "http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz"
ARCHIVE_ROOT = "tasks_1-20_v1-2"
# Seconds a connection or a read may wait for the server: a server that accepts and then never
# answers ends the download with an error instead of hanging it.
TIMEOUT_SECONDS = 60
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024  # the official archive is 15 MB
MAX_UNPACKED_BYTES = 1024 ** 3  # unpacked, about 100 MB: a gzip bomb is refused before extraction
DEADLINE_SECONDS = 15 * 60  # the whole download: a server that drips bytes cannot hold it for ever


def download(out_dir: Path, url: str = OFFICIAL_URL, progress: bool = True, timeout: float | None = None) -> Path:
    """Download the archive at ``url`` and unpack it into ``out_dir``; returns ``out_dir/tasks_1-20_v1-2``.

    The archive is unpacked in a temporary directory beside the destination and moved into place
    only when complete, so an interrupted download leaves nothing half-written.
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise DataError(f"cannot download {url}: expected an http, https or file URL")
    if scheme == "file" and not Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path)).is_file():
        raise DataError(f"cannot download {url}: not a regular file")  # a FIFO would block, a device never end
    out_dir = Path(out_dir)
    target = out_dir / ARCHIVE_ROOT
    if target.exists():
        raise DataError(f"{target} already exists; remove it or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".babi-download-") as scratch:
        archive = Path(scratch) / "babi.tar.gz"
        try:
            _fetch(url, archive, timeout or TIMEOUT_SECONDS, progress)
        except (OSError, ValueError) as error:  # timeouts are OSErrors
            raise DataError(f"cannot download {url}: {error or type(error).__name__}") from None
        unpacked = Path(scratch) / "unpacked"
        try:
            with tarfile.open(archive, "r:gz") as tar:
                if sum(member.size for member in tar.getmembers()) > MAX_UNPACKED_BYTES:
                    raise DataError(f"{url}: unpacks to more than {MAX_UNPACKED_BYTES:,} bytes; bAbI is about 100 MB")
                tar.extractall(unpacked, filter="data")  # refuses absolute paths, links out, devices
        except (tarfile.TarError, OSError, EOFError, zlib.error) as error:  # EOFError: a truncated archive
            raise DataError(f"{url}: not a readable bAbI archive: {error}") from None
        if not (unpacked / ARCHIVE_ROOT / "en").is_dir():
            raise DataError(f"{url}: the archive has no {ARCHIVE_ROOT}/en directory; is it the bAbI v1.2 archive?")
        shutil.move(str(unpacked / ARCHIVE_ROOT), target)
    return target


def _fetch(url: str, archive: Path, timeout: float, progress: bool) -> None:
    """``url`` into ``archive``, within the size cap and the overall deadline."""
    started, received = time.monotonic(), 0
    with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as file:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc="bAbI", disable=not progress) as bar:
            # read1 returns what one network read brings, so the deadline is checked between reads.
            while chunk := getattr(response, "read1", response.read)(1 << 20):
                received += len(chunk)
                if received > MAX_ARCHIVE_BYTES:
                    raise DataError(f"{url}: more than {MAX_ARCHIVE_BYTES:,} bytes; the bAbI archive is 15 MB")
                if time.monotonic() - started > DEADLINE_SECONDS:
                    raise DataError(f"{url}: the download took more than {DEADLINE_SECONDS} s")
                file.write(chunk)
                bar.update(len(chunk))
