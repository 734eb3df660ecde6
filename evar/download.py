"""Download a task's dataset from its publisher, verify it, unpack it, and write the task's metadata CSV.

Usage:
    python -m evar.download <task> <dest> [--work_root work] [--split_file PATH] [--keep_archives] [--no_metadata]
    evar download <task> <dest> ...

The archives (evar/download_sources.py: URLs, sizes, published checksums) go to `<dest>/downloads/`, each first
as `<name>.part`. An interrupted download resumes with an HTTP Range request: when the server answers 206 the
bytes are appended, when it answers 200 (no range support) the file restarts from zero. Connection errors are
retried with exponential back-off; a host that cannot be reached at all gives one error naming the host and the
hand-download fallback. A finished file is checked against its size and published checksum before it gets its
final name; a mismatch removes the `.part` and names the URL, the expected and the computed digest.

Each archive is unpacked into a temporary folder inside `<dest>` (members that would land outside it, links and
devices are refused), then its content is renamed into the dataset root `<dest>/<folder>/`, so an interrupted
unpack leaves nothing half-written there. A file `<dest>/downloads/<name>.unpacked` records a finished unpack, so
a rerun skips what is done. The archives are deleted after unpacking unless `--keep_archives`. Last, the task's
metadata builder runs on `<dest>/<folder>` exactly as `python -m evar.metadata <task> <dest>/<folder>` would.

Where a download is impossible here (no network, a proxy), fetch the files named by `--list` by hand into
`<dest>/downloads/` and rerun: present files are verified and used.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import socket
import stat
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Callable, Optional, Union

from .download_sources import NOT_DOWNLOADABLE, SOURCES, Checksum, DatasetSource, RemoteFile, downloadable_tasks, \
    source_for_task
from .errors import EvarError

__all__ = ['DownloadOptions', 'download_file', 'download_task', 'extract', 'main', 'published_checksum']

CHUNK = 1 << 20  # bytes read from the socket and written per step
_RETRIED_HTTP = (408, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class DownloadOptions:
    """How files are fetched: `retries` tries per URL after a failure that made no progress, `backoff` seconds
    before the first retry (doubling each time), `timeout` seconds of socket silence before a try fails,
    `progress` a tqdm bar on stderr."""
    retries: int = 5
    backoff: float = 1.0
    timeout: float = 60.0
    progress: bool = True


class _Unreachable(Exception):
    """The host of a URL could not be reached (name lookup, refused or timed-out connection) on every try."""


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest ('md5' or 'sha256') of the file at `path`, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            digest.update(block)
    return digest.hexdigest()


def _check_complete(path: Path, remote: RemoteFile, url: str, expected_size: Optional[int]) -> None:
    """Raises EvarError (removing `path`) when the size or the published checksum of `path` is wrong."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        path.unlink()
        raise EvarError(f'Download of {url} has {size} bytes, expected {expected_size}; the partial file was '
                        'removed: rerun to download it again.')
    if remote.checksum is not None:
        got = file_digest(path, remote.checksum.algorithm)
        if got != remote.checksum.hexdigest:
            path.unlink()
            raise EvarError(f'Checksum mismatch for {url}: expected {remote.checksum.algorithm} '
                            f'{remote.checksum.hexdigest}, got {got}. The file was removed: rerun to download it '
                            'again (a repeated mismatch means the publisher changed the file).')


def _verified(path: Path, remote: RemoteFile) -> bool:
    """Whether an existing file (e.g. fetched by hand) has the expected size and checksum."""
    if remote.size is not None and path.stat().st_size != remote.size:
        return False
    return remote.checksum is None or file_digest(path, remote.checksum.algorithm) == remote.checksum.hexdigest


def _open(url: str, offset: int, timeout: float):
    """The HTTP response for `url` from byte `offset` (a Range request when offset > 0)."""
    request = urllib.request.Request(url, headers={'User-Agent': 'evar-download', 'Accept-Encoding': 'identity'})
    if offset:
        request.add_header('Range', f'bytes={offset}-')
    return urllib.request.urlopen(request, timeout=timeout)


def _is_unreachable(error: BaseException) -> bool:
    """A failure to connect at all (DNS, refused, unreachable network, connect timeout), as opposed to a break."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    return isinstance(reason, (socket.gaierror, ConnectionRefusedError, socket.timeout, TimeoutError)) or (
        isinstance(reason, OSError) and reason.errno in (101, 113))  # ENETUNREACH, EHOSTUNREACH


def _fetch(url: str, part: Path, options: DownloadOptions, name: str, sleep: Callable[[float], None]) -> Optional[int]:
    """Downloads `url` into `part`, resuming it; returns the total size the server announced (or None).

    Raises _Unreachable when no try could connect, EvarError for an HTTP error or when the tries run out.
    """
    failures, connected, total, furthest, tries = 0, False, None, 0, 0
    while True:
        tries += 1
        offset = part.stat().st_size if part.exists() else 0
        try:
            with _open(url, offset, options.timeout) as response:
                connected = True
                status = response.status
                if offset and status == 206:
                    first = (response.headers.get('Content-Range') or '').split(' ')[-1].split('-')[0]
                    if first != str(offset):
                        raise EvarError(f'{url} answered a resume from byte {offset} with Content-Range '
                                        f'{response.headers.get("Content-Range")!r}.')
                    mode = 'ab'
                else:  # 200: the whole file (the server ignored the range, or this is the first try)
                    offset, mode = 0, 'wb'
                length = response.headers.get('Content-Length')
                total = offset + int(length) if length is not None else None
                _copy(response, part, mode, offset, total, name, options.progress)
                if total is not None and part.stat().st_size < total:
                    raise http.client.IncompleteRead(b'', total - part.stat().st_size)
                return total
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # the range starts at or past the end: restart cleanly
                part.unlink()
                continue
            if e.code not in _RETRIED_HTTP or failures >= options.retries:
                raise EvarError(f'{url} answered HTTP {e.code} {e.reason}.') from e
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            if not connected and _is_unreachable(e) and failures >= options.retries:
                raise _Unreachable(str(getattr(e, 'reason', e))) from e
            if failures >= options.retries:
                kept = part.stat().st_size if part.exists() else 0
                raise EvarError(f'Download of {url} failed {tries} times, the last {failures + 1} without progress '
                                f'(last error: {e}); rerun to resume from the {kept} bytes in {part}.') from e
        reached = part.stat().st_size if part.exists() else 0
        failures = 0 if reached > furthest else failures + 1  # a server without ranges that breaks ends too
        furthest = max(furthest, reached)
        sleep(options.backoff * 2 ** max(failures - 1, 0))


def _copy(response, part: Path, mode: str, offset: int, total: Optional[int], name: str, progress: bool) -> None:
    """Streams `response` into `part` (appending when mode is 'ab') with a tqdm bar."""
    from tqdm import tqdm

    with open(part, mode) as out, tqdm(total=total, initial=offset, unit='B', unit_scale=True, unit_divisor=1024,
                                       desc=name, disable=not progress, leave=False) as bar:
        for block in iter(lambda: response.read(CHUNK), b''):
            out.write(block)
            bar.update(len(block))


def published_checksum(remote: RemoteFile, options: DownloadOptions = DownloadOptions(),
                       sleep: Callable[[float], None] = time.sleep) -> RemoteFile:
    """`remote` with the checksum and size its `checksum_url` (a Zenodo API file entry: JSON with `checksum`
    '<algorithm>:<hex>' and `size` in bytes) gives, when it has no pinned checksum; else `remote` unchanged.

    Raises:
        _Unreachable: the API host could not be reached. EvarError: an HTTP error or an entry without a checksum.
    """
    import json

    if remote.checksum is not None or remote.checksum_url is None:
        return remote
    for failures in range(options.retries + 1):
        try:
            with _open(remote.checksum_url, 0, options.timeout) as response:
                entry = json.loads(response.read().decode('utf-8'))
            break
        except urllib.error.HTTPError as e:
            raise EvarError(f'{remote.checksum_url} answered HTTP {e.code} {e.reason} (looking up the published '
                            f'checksum of {remote.name}).') from e
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
            if failures == options.retries:
                if _is_unreachable(e):
                    raise _Unreachable(str(getattr(e, 'reason', e))) from e
                raise EvarError(f'Could not read the published checksum of {remote.name} from '
                                f'{remote.checksum_url}: {e}') from e
            sleep(options.backoff * 2 ** failures)
    algorithm, _, digest = str(entry.get('checksum', '')).partition(':')
    try:
        checksum = Checksum(algorithm, digest)
    except ValueError as e:
        raise EvarError(f'{remote.checksum_url} gives no usable checksum for {remote.name} ({e}).') from e
    size = entry.get('size')
    return replace(remote, checksum=checksum, size=size if isinstance(size, int) else remote.size)


def download_file(remote: RemoteFile, folder: Union[str, Path], options: DownloadOptions = DownloadOptions(),
                  sleep: Callable[[float], None] = time.sleep) -> Path:
    """Downloads `remote` into `folder` (resuming a `<name>.part`), verifies it, and returns its final path.

    A file already at `<folder>/<name>` that passes the checks is kept without a download. Mirrors are tried in
    order when a host cannot be reached.

    Raises:
        EvarError: every URL's host is unreachable (naming the hosts and the hand-download fallback), an HTTP error,
            retries exhausted, or a size or checksum mismatch (the `.part` is removed).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / remote.name
    try:
        remote = published_checksum(remote, options, sleep)
    except _Unreachable as e:
        host = urllib.parse.urlsplit(remote.checksum_url).hostname
        if path.exists():
            from .tasks.layout import warn

            warn(f'{host} cannot be reached to read the published checksum of {remote.name}: using {path} '
                 'unverified.')
            return path
        raise EvarError(f'Cannot reach {host} ({e}) to read the published checksum of {remote.name}. Download it by '
                        f'hand from {" or ".join(remote.urls)} into {folder}/, check its md5 against {host}\'s record '
                        'page, and rerun.') from e
    if path.exists():
        if _verified(path, remote):
            return path
        raise EvarError(f'{path} exists but does not match the published size/checksum '
                        f'({remote.provenance}); remove it and rerun.')
    part = path.with_name(path.name + '.part')
    unreachable = []
    for url in remote.urls:
        try:
            total = _fetch(url, part, options, remote.name, sleep)
        except _Unreachable as e:
            unreachable.append(f'{urllib.parse.urlsplit(url).hostname} ({e})')
            continue
        _check_complete(part, remote, url, remote.size if remote.size is not None else total)
        os.replace(part, path)
        return path
    raise EvarError(f'Cannot reach {" nor ".join(unreachable)}. Download {remote.name} by hand from '
                    f'{" or ".join(remote.urls)} into {folder}/ and rerun the same command: the file is verified '
                    'and used.')


# ---------------------------------------------------------------- unpacking

def _safe_member(name: str, archive: Path) -> PurePosixPath:
    """`name` as a relative path that stays inside the extraction folder; else EvarError."""
    rel = PurePosixPath(name.replace('\\', '/'))
    if rel.is_absolute() or '..' in rel.parts or (rel.parts and ':' in rel.parts[0]):
        raise EvarError(f'{archive} holds the member {name!r}, which would be written outside the extraction '
                        'folder; refusing to unpack it.')
    return rel


def _unpack_zip(archive: Path, out: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            _safe_member(info.filename, archive)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise EvarError(f'{archive} holds the symbolic link {info.filename!r}; refusing to unpack it.')
        try:
            zf.extractall(out)
        except zipfile.BadZipFile as e:  # a CRC error shows here
            raise EvarError(f'{archive} is damaged ({e}); remove it and rerun.') from e


def _unpack_tar(archive: Path, out: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                _safe_member(member.name, archive)
                if not (member.isfile() or member.isdir()):
                    raise EvarError(f'{archive} holds {member.name!r}, which is not a plain file or folder '
                                    '(a link or device); refusing to unpack it.')
            if hasattr(tarfile, 'data_filter'):  # Python >= 3.11.4 / 3.12: the standard library's own guard too
                tf.extractall(out, filter='data')
            else:
                tf.extractall(out)
    except (tarfile.TarError, EOFError) as e:
        raise EvarError(f'{archive} is damaged ({e}); remove it and rerun.') from e


def _unpack_7z(archive: Path, out: Path) -> None:
    try:
        import py7zr
    except ImportError as e:
        raise EvarError(f'{archive} is a 7z archive: install py7zr (pip install py7zr, or evar[download]) and rerun, '
                        'or unpack it by hand and run `python -m evar.metadata`.') from e
    with py7zr.SevenZipFile(archive) as z:
        for name in z.getnames():
            _safe_member(name, archive)
        z.extractall(out)


def _unpack_split_zip(archive: Path, out: Path) -> None:
    """Joins `<stem>.z01 ... .zip` (a zip split by `zip -s`) with the `zip` tool, then unpacks the joined zip."""
    zip_tool = shutil.which('zip')
    if zip_tool is None:
        raise EvarError(f'{archive} ends a split zip; joining it needs the `zip` tool (apt install zip). By hand: '
                        f'`zip -s 0 {archive} --out joined.zip && unzip joined.zip`, then run '
                        '`python -m evar.metadata`.')
    joined = out.parent / f'{archive.stem}.joined.zip'
    try:
        result = subprocess.run([zip_tool, '-q', '-s', '0', str(archive), '--out', str(joined)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise EvarError(f'zip -s 0 {archive} failed: {result.stderr.strip() or result.stdout.strip()}')
        _unpack_zip(joined, out)
    finally:
        joined.unlink(missing_ok=True)


_UNPACKERS = {'zip': _unpack_zip, 'tar': _unpack_tar, '7z': _unpack_7z, 'split-zip': _unpack_split_zip}


def extract(archive: Union[str, Path], remote: RemoteFile, root: Union[str, Path]) -> list[Path]:
    """Unpacks `archive` (as described by `remote`) into the dataset root `root`; returns the paths it created.

    The archive is unpacked into a temporary folder beside `root`, members outside it, links and devices being
    refused; the content of `remote.member_root` (or of the whole archive when it has no such top folder) is then
    renamed into `root/remote.into`. A 'file' is moved there as it is.

    Raises:
        EvarError: a damaged or unsafe archive, or a target path that already exists (remove it and rerun).
    """
    archive, root = Path(archive), Path(root)
    target = root / remote.into if remote.into else root
    target.mkdir(parents=True, exist_ok=True)
    if remote.archive == 'file':
        dest = target / remote.name
        _refuse_existing(dest, archive)
        shutil.copy2(archive, dest)
        return [dest]
    if remote.archive == 'zip-part':
        return []
    with tempfile.TemporaryDirectory(prefix=f'.unpack-{remote.name}-', dir=root.parent) as tmp:
        staging = Path(tmp) / 'content'
        staging.mkdir()
        _UNPACKERS[remote.archive](archive, staging)
        top = _member_root(staging, remote.member_root)
        entries = sorted(top.iterdir())
        for entry in entries:
            _refuse_existing(target / entry.name, archive)
        created = []
        for entry in entries:
            os.replace(entry, target / entry.name)
            created.append(target / entry.name)
    return created


def _member_root(staging: Path, member_root: str) -> Path:
    """The folder of the unpacked archive whose content is wanted: `member_root` when there, else the one folder
    of the same last name up to two levels down, else the whole archive."""
    if not member_root:
        return staging
    if (staging / member_root).is_dir():
        return staging / member_root
    name = PurePosixPath(member_root).name
    found = [p for p in (*staging.glob(name), *staging.glob(f'*/{name}')) if p.is_dir()]
    return found[0] if len(found) == 1 else staging


def _refuse_existing(dest: Path, archive: Path) -> None:
    if os.path.lexists(dest):
        raise EvarError(f'{dest} already exists, so {archive.name} is not unpacked over it. Remove it (or pick '
                        'another <dest>) and rerun.')


# ---------------------------------------------------------------- the command

def _source(task: str) -> DatasetSource:
    source = source_for_task(task)
    if source is None:
        if task in NOT_DOWNLOADABLE:
            raise EvarError(f'No public archive for task {task!r}: {NOT_DOWNLOADABLE[task]}')
        raise EvarError(f'No download for task {task!r}. Downloadable tasks: {", ".join(downloadable_tasks())}.')
    return source


def download_task(task: str, dest: Union[str, Path], work_root: Optional[Union[str, Path]] = None,
                  split_file: Optional[Union[str, Path]] = None, keep_archives: bool = False, metadata: bool = True,
                  options: DownloadOptions = DownloadOptions(),
                  sources: Optional[dict] = None) -> Path:
    """Downloads, verifies and unpacks `task`'s dataset under `dest`, then writes its metadata CSV; returns the
    folder the metadata builder reads (`<dest>/<folder>[/<metadata_root>]`).

    work_root, split_file: as for `python -m evar.metadata`. keep_archives: keep `<dest>/downloads/*` after
    unpacking. metadata: run the task's metadata builder. sources: task -> DatasetSource overriding the registry
    (tests serve their own archives).

    Raises:
        EvarError: an unknown task or one without a public archive (before any download), and every download or
            unpacking error (see `download_file`, `extract`).
    """
    source = (sources or {}).get(task) or _source(task)
    dest = Path(dest).expanduser()
    downloads = dest / 'downloads'
    root = dest / source.folder
    print(f'{source.name} ({source.licence}) -> {root}')
    if source.note:
        print(source.note)
    done = [downloads / f'{r.name}.unpacked' for r in source.files]
    for remote, marker in zip(source.files, done):
        if marker.exists():
            continue
        download_file(remote, downloads, options)
    for remote, marker in zip(source.files, done):
        if marker.exists() or remote.archive == 'zip-part':
            continue
        extract(downloads / remote.name, remote, root)
        marker.touch()
        print(f'Unpacked {remote.name}')
    if not keep_archives:
        for remote in source.files:
            (downloads / remote.name).unlink(missing_ok=True)
    root = root / source.metadata_root if source.metadata_root else root
    if metadata:
        _write_metadata(task, root, work_root, split_file)
    return root


def _write_metadata(task: str, root: Path, work_root, split_file) -> None:
    from .tasks import BUILTIN_TASKS
    from .tasks.build import make_metadata

    spec = BUILTIN_TASKS.get(task)
    if spec is None or spec.build is None:
        print(f'evar has no metadata builder for {task}: the data is in {root}.')
        return
    if spec.split_file == 'required' and split_file is None:
        print(f'{task} needs a split file before its metadata can be written: {spec.split_file_help}\nThen run: '
              f'python -m evar.metadata {task} {root} --split_file <path>')
        return
    make_metadata(task, root, work_root=work_root, split_file=split_file)


def _listing(task: str) -> str:
    source = _source(task)
    lines = [f'{source.name} -> <dest>/{source.folder}  ({source.licence})']
    for r in source.files:
        facts = [f'{r.checksum.algorithm} {r.checksum.hexdigest}' if r.checksum else
                 'checksum read at download time' if r.checksum_url else 'no checksum',
                 *([f'{r.size:,} bytes'] if r.size is not None else []), r.provenance]
        lines.append(f'  {r.name}: {" | ".join(r.urls)}\n    {"; ".join(facts)}')
    return '\n'.join(lines)


def main(argv: Optional[list] = None) -> int:
    """Runs `python -m evar.download` with the command-line arguments `argv` (default: sys.argv[1:]); returns 0.

    Raises:
        EvarError: bad arguments, an unknown task, or a failed download (one `Error:` line on the command line).
    """
    from .cli import ArgumentParser

    names = ', '.join(downloadable_tasks())
    parser = ArgumentParser(prog='python -m evar.download', formatter_class=argparse.RawDescriptionHelpFormatter,
                            description=__doc__.split('\n\n')[0],
                            epilog=f'Downloadable tasks: {names}.\nSources: {", ".join(SOURCES)}.')
    parser.add_argument('task', help=f'one of: {names}')
    parser.add_argument('dest', nargs='?', default=None, help='download folder (the dataset root goes below it)')
    parser.add_argument('--work_root', default=None, help='work folder (default: $EVAR_WORK, else work)')
    parser.add_argument('--split_file', default=None, help='split CSV or folder, for tasks with no published split')
    parser.add_argument('--keep_archives', action='store_true', help='keep <dest>/downloads/ after unpacking')
    parser.add_argument('--no_metadata', action='store_true', help='do not run the metadata builder')
    parser.add_argument('--list', action='store_true', help='print the files, URLs and checksums; download nothing')
    parser.add_argument('--retries', type=int, default=DownloadOptions.retries, help='tries per URL after a failure')
    args = parser.parse_args(argv)
    if args.list:
        print(_listing(args.task))
        return 0
    if args.dest is None:
        raise EvarError('python -m evar.download: missing argument DEST (the download folder).')
    download_task(args.task, args.dest, work_root=args.work_root, split_file=args.split_file,
                  keep_archives=args.keep_archives, metadata=not args.no_metadata,
                  options=DownloadOptions(retries=args.retries))
    return 0


if __name__ == '__main__':
    from .cli import module_main

    module_main(main)
