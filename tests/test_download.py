"""evar.download: a local HTTP server (with Range support) serves archives made in the tests; downloads resume,
verify their checksum, unpack safely and end with the task's metadata CSV."""

import csv
import hashlib
import io
import shutil
import tarfile
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evar.download import DownloadOptions, download_file, download_task, extract, main
from evar.download_sources import SOURCES, Checksum, DatasetSource, RemoteFile, downloadable_tasks, source_for_task
from evar.errors import EvarError
from evar.tasks import BUILTIN_TASKS
from helpers import SHARED, needs_shared

FAST = DownloadOptions(retries=3, backoff=0.01, timeout=5.0, progress=False)


class _Handler(BaseHTTPRequestHandler):
    """Serves `server.files` (path -> bytes) with Range support; the first GET of a path in `server.break_after`
    announces the full length, sends only that many bytes and closes the connection."""

    def do_GET(self):  # noqa: D102 (http.server's hook)
        data = self.server.files.get(self.path)
        self.server.requests.append((self.path, self.headers.get('Range')))
        if data is None:
            self.send_error(404)
            return
        start = 0
        wanted = self.headers.get('Range')
        if wanted and self.server.ranges:
            start = int(wanted.split('=')[1].split('-')[0])
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        else:
            self.send_response(200)
        self.send_header('Content-Length', str(len(data) - start))
        self.end_headers()
        cut = self.server.break_after.pop(self.path, None)
        self.wfile.write(data[start:] if cut is None else data[start:start + cut])
        if cut is not None:
            self.close_connection = True

    def log_message(self, *args):  # noqa: D102 (quiet)
        pass


@pytest.fixture
def server():
    """A local HTTP server in a thread; yields it (set .files, .break_after, .ranges) and its base URL."""
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    httpd.files, httpd.break_after, httpd.requests, httpd.ranges = {}, {}, [], True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    yield httpd, f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()
    httpd.server_close()


def _remote(name, url, data, algorithm='sha256', **kw):
    digest = hashlib.new(algorithm, data).hexdigest()
    return RemoteFile(name, (url,), len(data), Checksum(algorithm, digest), 'made in the test', kw.pop('archive', 'file'),
                      **kw)


def _free_port_url():
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return f'http://127.0.0.1:{port}/x.zip'


def test_full_download_verifies_and_names_file(server, tmp_path):
    httpd, base = server
    data = bytes(range(256)) * 4000
    httpd.files['/a.bin'] = data
    path = download_file(_remote('a.bin', base + '/a.bin', data, 'md5'), tmp_path, FAST)
    assert path == tmp_path / 'a.bin' and path.read_bytes() == data
    assert not (tmp_path / 'a.bin.part').exists()
    assert httpd.requests == [('/a.bin', None)]
    download_file(_remote('a.bin', base + '/a.bin', data, 'md5'), tmp_path, FAST)  # present and valid: no request
    assert len(httpd.requests) == 1


def test_broken_connection_resumes_with_a_range_request(server, tmp_path):
    httpd, base = server
    data = hashlib.sha256(b'seed').digest() * 40_000  # 1.28 MB
    httpd.files['/b.bin'] = data
    httpd.break_after['/b.bin'] = 300_000
    path = download_file(_remote('b.bin', base + '/b.bin', data), tmp_path, FAST)
    assert path.read_bytes() == data
    assert httpd.requests == [('/b.bin', None), ('/b.bin', 'bytes=300000-')]


def test_server_without_range_support_restarts_cleanly(server, tmp_path):
    httpd, base = server
    data = b'0123456789' * 50_000
    httpd.files['/c.bin'], httpd.break_after['/c.bin'], httpd.ranges = data, 123_456, False
    path = download_file(_remote('c.bin', base + '/c.bin', data), tmp_path, FAST)
    assert path.read_bytes() == data  # the 200 answer to the Range request rewrote the file from byte 0
    assert [r for _, r in httpd.requests] == [None, 'bytes=123456-']


def test_wrong_checksum_removes_part_and_names_url_expected_got(server, tmp_path):
    httpd, base = server
    data = b'evar' * 1000
    httpd.files['/d.bin'] = data
    wrong = RemoteFile('d.bin', (base + '/d.bin',), None, Checksum('md5', '0' * 32), 'test', 'file')
    with pytest.raises(EvarError) as e:
        download_file(wrong, tmp_path, FAST)
    message = str(e.value)
    assert base + '/d.bin' in message and '0' * 32 in message and hashlib.md5(data).hexdigest() in message
    assert not (tmp_path / 'd.bin.part').exists() and not (tmp_path / 'd.bin').exists()


def test_unreachable_host_is_one_clear_error(tmp_path):
    remote = RemoteFile('x.zip', (_free_port_url(),), None, None, 'test', 'zip')
    with pytest.raises(EvarError, match=r'Cannot reach 127\.0\.0\.1 .*Download x\.zip by hand .* into '):
        download_file(remote, tmp_path, FAST)


def test_unreachable_mirror_falls_back_to_the_next(server, tmp_path):
    httpd, base = server
    data = b'mirror' * 100
    httpd.files['/m.bin'] = data
    remote = replace(_remote('m.bin', base + '/m.bin', data), urls=(_free_port_url(), base + '/m.bin'))
    assert download_file(remote, tmp_path, FAST).read_bytes() == data


def test_http_404_names_the_url(server, tmp_path):
    _, base = server
    with pytest.raises(EvarError, match=r'/missing\.zip answered HTTP 404'):
        download_file(RemoteFile('missing.zip', (base + '/missing.zip',), None, None, 'test', 'zip'), tmp_path, FAST)


def test_unknown_task_and_task_without_archive(tmp_path):
    with pytest.raises(EvarError, match='No download for task .nosuchtask.. Downloadable tasks: esc50'):
        download_task('nosuchtask', tmp_path)
    with pytest.raises(EvarError, match='Git LFS'):
        download_task('cremad', tmp_path)
    assert not (tmp_path / 'downloads').exists()  # refused before any work
    assert main(['esc50', '--list']) == 0


def _zip_bytes(members: dict) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w') as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def test_extract_refuses_path_traversal_and_links(tmp_path):
    bad = tmp_path / 'bad.zip'
    bad.write_bytes(_zip_bytes({'top/ok.txt': b'1', '../evil.txt': b'2'}))
    root = tmp_path / 'data' / 'root'
    with pytest.raises(EvarError, match="member '../evil.txt'"):
        extract(bad, RemoteFile('bad.zip', ('u',), None, None, 't', 'zip'), root)
    assert not (tmp_path / 'data' / 'evil.txt').exists() and not any(root.iterdir())
    link_tar = tmp_path / 'link.tar'
    with tarfile.open(link_tar, 'w') as tf:
        info = tarfile.TarInfo('top/passwd')
        info.type, info.linkname = tarfile.SYMTYPE, '/etc/passwd'
        tf.addfile(info)
    with pytest.raises(EvarError, match='not a plain file'):
        extract(link_tar, RemoteFile('link.tar', ('u',), None, None, 't', 'tar'), root)


def test_extract_takes_member_root_and_refuses_to_overwrite(tmp_path):
    archive = tmp_path / 'a.zip'
    archive.write_bytes(_zip_bytes({'pkg-1/meta/x.csv': b'a', 'pkg-1/audio/y.wav': b'b'}))
    remote = RemoteFile('a.zip', ('u',), None, None, 't', 'zip', member_root='pkg-1')
    root = tmp_path / 'ds'
    assert sorted(p.name for p in extract(archive, remote, root)) == ['audio', 'meta']
    assert (root / 'meta' / 'x.csv').read_bytes() == b'a'
    with pytest.raises(EvarError, match='already exists'):
        extract(archive, remote, root)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.unpack')] == []  # staging folders removed


@needs_shared
def test_esc50_download_unpack_and_metadata(server, tmp_path, capsys):
    """An ESC-50-layout zip of 6 real clips (ESC-50-<commit>/audio, meta/esc50.csv) served locally, with a break
    half-way: downloaded, resumed, verified, unpacked, and its metadata CSV written with the clips' folds."""
    httpd, base = server
    real = SHARED / 'data' / 'ESC-50'
    with open(real / 'meta' / 'esc50.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    picked = [next(r for r in rows if r['fold'] == str(k)) for k in (2, 3, 5)] + \
        [r for r in rows if r['fold'] == '4'][:3]
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(rows[0]), lineterminator='\n')
    writer.writeheader()
    writer.writerows(picked)
    top = 'ESC-50-0123abc'
    members = {f'{top}/meta/esc50.csv': table.getvalue().encode()}
    members.update({f'{top}/audio/{r["filename"]}': (real / 'audio' / r['filename']).read_bytes() for r in picked})
    data = _zip_bytes(members)
    httpd.files['/esc.zip'] = data
    httpd.break_after['/esc.zip'] = len(data) // 2
    registry = SOURCES['ESC-50']
    test_source = replace(registry, files=(_remote('esc.zip', base + '/esc.zip', data, 'md5', archive='zip',
                                                   member_root=top),))
    work = tmp_path / 'work'
    root = download_task('esc50', tmp_path / 'dl', work_root=work, options=FAST, sources={'esc50': test_source})
    assert root == tmp_path / 'dl' / 'ESC-50'
    assert [r for _, r in httpd.requests] == [None, f'bytes={len(data) // 2}-']
    assert sorted(p.name for p in (root / 'audio').iterdir()) == sorted(r['filename'] for r in picked)
    assert not (tmp_path / 'dl' / 'downloads' / 'esc.zip').exists()  # archive removed after unpacking
    with open(work / 'metadata' / 'esc50.csv', newline='') as f:
        got = list(csv.DictReader(f))
    assert sorted((g['file_name'], g['label'], g['fold']) for g in got) == \
        sorted((f'audio/{r["filename"]}', r['category'], r['fold']) for r in picked)
    assert (work / '16k' / BUILTIN_TASKS['esc50'].folder).resolve() == root.resolve()  # audio linked for use
    # A rerun finds every archive unpacked: no request, same CSV.
    download_task('esc50', tmp_path / 'dl', work_root=work, options=FAST, sources={'esc50': test_source})
    assert len(httpd.requests) == 2


def test_registry_records_are_consistent():
    """Every source names tasks evar has, unique file names, and a checksum or a stated reason for none."""

    assert len(set(downloadable_tasks())) == len(downloadable_tasks())
    for source in SOURCES.values():
        if source.folder != 'hear2021' or 'beijing_opera' in BUILTIN_TASKS:  # HEAR's tasks come with evar/tasks/hear.py
            assert all(t in BUILTIN_TASKS for t in source.tasks), source.name
        assert len({f.name for f in source.files}) == len(source.files)
        for f in source.files:
            assert f.urls[0].startswith('http') and f.provenance
            assert f.checksum is not None or f.checksum_url or 'no checksum' in f.provenance, f.name  # reason for none
    assert source_for_task('nspitch') is SOURCES['NSynth']
    split = [f.archive for f in SOURCES['FSD50K'].files]
    assert split.count('split-zip') == 2 and split.count('zip-part') == 6
    with pytest.raises(ValueError, match='32 lower-case hex'):
        Checksum('md5', 'ABC')


def test_split_zip_is_joined_and_unpacked(tmp_path):
    """A zip split by `zip -s` (as FSD50K's audio) is joined and unpacked (needs the zip tool)."""
    import subprocess

    if shutil.which('zip') is None:
        pytest.skip('the zip tool is absent')
    src = tmp_path / 'src' / 'FSD50K.dev_audio'
    src.mkdir(parents=True)
    blob = hashlib.sha256(b'x').digest() * 3000  # 96 kB, hardly compressible
    for i in range(3):
        (src / f'{i}.wav').write_bytes(blob[i:] + blob[:i])
    (tmp_path / 'dl').mkdir()
    subprocess.run(['zip', '-q', '-0', '-r', '-s', '100k', str(tmp_path / 'dl' / 'dev.zip'), 'FSD50K.dev_audio'],
                   cwd=tmp_path / 'src', check=True, capture_output=True)
    assert (tmp_path / 'dl' / 'dev.z01').exists()
    extract(tmp_path / 'dl' / 'dev.zip', RemoteFile('dev.zip', ('u',), None, None, 't', 'split-zip'), tmp_path / 'FSD')
    assert sorted(p.name for p in (tmp_path / 'FSD' / 'FSD50K.dev_audio').iterdir()) == ['0.wav', '1.wav', '2.wav']
    assert (tmp_path / 'FSD' / 'FSD50K.dev_audio' / '1.wav').read_bytes() == blob[1:] + blob[:1]


def test_file_fetched_by_hand_is_verified_and_used(tmp_path):
    """With the host unreachable, a file put into downloads/ by hand is used when its checksum matches, and refused
    (naming it) when it does not."""
    data = b'by hand' * 100
    remote = replace(_remote('h.bin', _free_port_url(), data), size=None)
    (tmp_path / 'h.bin').write_bytes(data)
    assert download_file(remote, tmp_path, FAST).read_bytes() == data
    (tmp_path / 'h.bin').write_bytes(data + b'!')
    with pytest.raises(EvarError, match=r'h\.bin exists but does not match'):
        download_file(remote, tmp_path, FAST)


def test_tar_without_top_folder_unpacks_into_the_root(tmp_path):
    """A Speech-Commands-like tar.gz (word folders and lists at the archive's top) lands in the dataset root."""
    archive = tmp_path / 'spc.tar.gz'
    with tarfile.open(archive, 'w:gz') as tf:
        for name, data in (('./yes/a_nohash_0.wav', b'RIFF'), ('./validation_list.txt', b'yes/a_nohash_0.wav\n')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    root = tmp_path / 'speech_commands_v0.02'
    extract(archive, RemoteFile('spc.tar.gz', ('u',), None, None, 't', 'tar'), root)
    assert (root / 'yes' / 'a_nohash_0.wav').read_bytes() == b'RIFF'
    assert (root / 'validation_list.txt').is_file()


def test_zenodo_checksum_read_at_download_and_metadata_root(server, tmp_path):
    """A HEAR-style source: the md5 comes from a Zenodo-API-like JSON entry; the archive's tasks/<folder>/ lands in
    <dest>/hear2021/<folder>/ and the returned root is its 48000/ rate folder. A wrong published md5 is refused."""
    httpd, base = server
    folder = 'toy_task-v1.0-full'
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode='w:gz') as tf:
        for name, data in ((f'tasks/{folder}/task_metadata.json', b'{}'), (f'tasks/{folder}/48000/fold00/a.wav', b'RIFF')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    data = archive.getvalue()
    api = '/api/records/1/files/toy.tar.gz'
    httpd.files[api + '/content'] = data
    httpd.files[api] = ('{"key": "toy.tar.gz", "size": %d, "checksum": "md5:%s"}'
                        % (len(data), hashlib.md5(data).hexdigest())).encode()
    remote = RemoteFile('toy.tar.gz', (base + api + '/content',), None, None, 'md5 from the API', 'tar',
                        member_root=f'tasks/{folder}', into=folder, checksum_url=base + api)
    source = DatasetSource('toy', ('toy',), 'hear2021', (remote,), 'test', metadata_root=f'{folder}/48000')
    root = download_task('toy', tmp_path, options=FAST, sources={'toy': source})
    assert root == tmp_path / 'hear2021' / folder / '48000'
    assert (root / 'fold00' / 'a.wav').read_bytes() == b'RIFF'
    assert (root.parent / 'task_metadata.json').is_file()
    httpd.files[api] = ('{"size": %d, "checksum": "md5:%s"}' % (len(data), '1' * 32)).encode()
    with pytest.raises(EvarError, match='expected md5 ' + '1' * 32):
        download_file(remote, tmp_path / 'again', FAST)


def test_connection_that_always_breaks_ends_with_one_error(server, tmp_path):
    """A server without range support that breaks every answer at the same byte makes no progress: after the
    retries, one error names the URL and the bytes kept."""
    httpd, base = server
    data = b'x' * 200_000
    httpd.files['/e.bin'], httpd.ranges = data, False

    class Breaks(dict):
        def pop(self, key, default=None):  # every answer breaks after 50,000 bytes
            return 50_000 if key == '/e.bin' else default

    httpd.break_after = Breaks()
    with pytest.raises(EvarError, match=r'/e\.bin failed 5 times, the last 4 without progress .*rerun to resume'):
        download_file(_remote('e.bin', base + '/e.bin', data), tmp_path, FAST)
    assert len(httpd.requests) == 5  # the first try progressed, then 1 + 3 retries made none
