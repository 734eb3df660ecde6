"""The `evar_protocol` run setting: EVAR's random crops of training/validation clips, zero padding that counts as
audio, and EVAR's running statistics (divisor n), each checked against a value worked out here."""

import json

import numpy as np
import pytest

from evar.errors import EvarError
from helpers import ROOT

SR = 16000
LOG_EPS = float(np.log(np.float32(np.finfo(np.float32).eps)))  # log-mel of an all-zero frame (power 0 + eps)


def write_clips(folder, seconds, seed=0, gains=None):
    """Float WAV clips `<i>.wav` of noise times a ramp, lengths in seconds, each at its gain (default 0.1)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, sec in enumerate(seconds):
        n = int(round(sec * SR))
        gain = 0.1 if gains is None else gains[i]
        wav = (rng.standard_normal(n) * gain * (0.5 + np.arange(n) / n)).astype(np.float32)
        sf.write(folder / f'{i}.wav', wav, SR, subtype='FLOAT')
        names.append(f'{i}.wav')
    return names


def melspec():
    from evar.models import create_model

    return create_model('melspec', sample_rate=SR, norm_stats=[0.0, 1.0])  # no task statistics here


def extract(model, dataset, train=(), protocol=None):
    from evar.embed.extract import ExtractSettings, extract_embeddings

    return extract_embeddings(model, dataset, np.asarray(train, dtype=np.int64),
                              ExtractSettings(batch_size=4, progress=False), protocol=protocol)


def test_off_by_default_and_bad_values_are_clear_errors():
    from evar.config import load_config
    from evar.embed.protocol import PARTS

    config = ROOT / 'config' / 'melspec.yaml'
    assert load_config(config).run.evar_protocol is False
    assert load_config(config, 'evar_protocol=true').run.evar_protocol == sorted(PARTS)
    assert load_config(config, 'evar_protocol=[zero_padding,random_crop]').run.evar_protocol == ['random_crop',
                                                                                                  'zero_padding']
    assert load_config(config, 'evar_protocol=[]').run.evar_protocol is False
    # Statistics alone keep any crop; crops and padding are EVAR's only with its head-cropped test split.
    assert load_config(config, 'evar_protocol=[running_stats],crop=center').run.evar_protocol == ['running_stats']
    with pytest.raises(EvarError, match=r"melspec.yaml: evar_protocol part\(s\) \['random_crops'\] are unknown"):
        load_config(config, 'evar_protocol=[random_crops]')
    with pytest.raises(EvarError, match="key 'evar_protocol' expects"):
        load_config(config, 'evar_protocol=yes please')
    with pytest.raises(EvarError, match='it needs crop: head, not crop: center'):
        load_config(config, 'evar_protocol=true,crop=center')


def test_zero_padding_enters_pooling_as_evar_pads(tmp_path):
    """A 0.5-s clip in a 1-s unit: EVAR embeds the clip followed by 0.5 s of zeros, and pools every frame."""
    import torch

    from evar.data import ClipDataset
    from evar.embed.protocol import EvarProtocol, ProtocolClipDataset

    names = write_clips(tmp_path, [0.5, 1.0])
    args = (tmp_path, names, SR, 1.0, 'head')
    model = melspec()
    padded = ProtocolClipDataset(*args, protocol=EvarProtocol(zero_padding=True), random_rows=[True, True])
    wav, _ = padded[0]
    assert len(wav) == SR and not wav[SR // 2:].any()
    on, off = extract(model, padded), extract(model, ClipDataset(*args))
    with torch.inference_mode():
        x = model.features(torch.from_numpy(wav)[None], torch.tensor([SR]))[0][0].double().numpy()  # [64, 101]
    # Frame t spans samples t*160 - 512 .. t*160 + 511: from t = 54 on it holds zeros only.
    assert x.shape == (64, 101) and (x[:, 54:] == LOG_EPS).all() and (x[:, :50] > LOG_EPS + 1).all()
    expected = (x[:, :54].sum(1) + 47 * LOG_EPS) / 101 + x.max(1)  # mean over all 101 frames + max
    # float32 front end: the same ops on the same clip, batched differently; 1e-5 covers their rounding.
    np.testing.assert_allclose(on[0], expected, rtol=1e-5, atol=1e-5)
    # Without the option the padding is masked: the mean is over the clip's own 51 frames.
    assert np.abs(on[0] - off[0]).max() > 1.0
    np.testing.assert_allclose(on[1], off[1], rtol=1e-6, atol=1e-6)  # a full-length clip is not padded


def test_long_training_clips_are_cropped_at_random_reproducibly(tmp_path):
    from evar.audio import load_audio
    from evar.embed.protocol import EvarProtocol, ProtocolClipDataset

    names = write_clips(tmp_path, [2.5, 2.5, 2.5, 2.5, 3.0, 0.5])
    random_rows = [True, True, True, True, False, True]  # row 4 is a test row: EVAR keeps its head

    def items(protocol):
        data = ProtocolClipDataset(tmp_path, names, SR, 1.0, 'head', protocol=protocol, random_rows=random_rows)
        return [data[i][0] for i in range(len(names))]

    protocol = EvarProtocol(random_crop=True)
    first, again = items(protocol), items(EvarProtocol(random_crop=True))
    starts = []
    for i, name in enumerate(names):
        full = load_audio(tmp_path / name, SR)[0]
        np.testing.assert_array_equal(first[i], again[i])  # reproducible
        if i == 4:
            np.testing.assert_array_equal(first[i], full[:SR])
        elif i == 5:
            np.testing.assert_array_equal(first[i], full)  # shorter than the unit, no padding part: as it is
        else:
            start = protocol.crop_start(name, len(full), SR)
            assert 0 <= start < len(full) - SR
            np.testing.assert_array_equal(first[i], full[start:start + SR])
            starts.append(start)
    assert len(set(starts)) == 4 and min(starts) > 0  # one start per clip, not the head
    other = items(EvarProtocol(random_crop=True, seed=43))
    assert not np.array_equal(other[0], first[0])
    # Over many clips the starts cover EVAR's range 0 .. len - unit - 1 uniformly.
    many = np.array([protocol.crop_start(f'{i}.wav', SR + 100, SR) for i in range(4000)])
    assert many.min() == 0 and many.max() == 99 and abs(many.mean() - 49.5) < 2.0


def test_statistics_follow_evar_running_mean(tmp_path):
    """EVAR's running mean adds (m_k - mean) / (k - 1): with three batches its statistics are the mean of the batch
    means of batches 2 and 3, and the mean of their squared deviations from the running mean of that moment."""
    import torch

    from evar.embed.protocol import EvarProtocol, ProtocolClipDataset
    from evar.models import create_model
    from evar.models.base import stats_from_sums
    from helpers.tiny_models import tiny_byola

    names = write_clips(tmp_path / 'audio', [0.6, 1.0, 1.4, 0.8, 1.0, 2.0, 0.3, 1.0],
                        gains=[0.3, 0.01, 0.1, 0.05, 0.2, 0.02, 0.1, 0.1])
    protocol = EvarProtocol(zero_padding=True, running_stats=True, batch_size=2)
    data = ProtocolClipDataset(tmp_path / 'audio', names, SR, 1.0, 'head', protocol=protocol,
                               random_rows=np.ones(8, dtype=bool))
    model = create_model('byola', **tiny_byola(tmp_path))
    train = np.arange(6)
    extract(model, data, train, protocol)
    batches = protocol.stats_batches(train)
    assert [len(b) for b in batches] == [2, 2, 2] and sorted(np.concatenate(batches)) == list(train)
    with torch.inference_mode():
        feats = {i: model.features(torch.from_numpy(data[i][0])[None], torch.tensor([SR]))[0].double().numpy()
                 for i in train}
    values = [np.concatenate([feats[i].ravel() for i in b]) for b in batches]
    m = [v.mean() for v in values]
    mean2, mean3 = m[1], (m[1] + m[2]) / 2  # the running mean after batches 2 and 3
    var = (((values[1] - mean2) ** 2).mean() + ((values[2] - mean3) ** 2).mean()) / 2
    # float32 features summed in float64: 1e-5 relative covers float32 rounding of the log-mel.
    assert model.norm_mean == pytest.approx(mean3, rel=1e-5)
    assert model.norm_std == pytest.approx(np.sqrt(var), rel=1e-5)
    pooled_mean, _ = stats_from_sums(torch.tensor([sum(v.sum() for v in values), 0.0, sum(v.size for v in values)]))
    assert abs(model.norm_mean - pooled_mean) > 0.1  # evar's own statistics (n + 1) differ: 0.25 here


def test_running_stats_and_evar_batches():
    from evar.embed.protocol import EvarProtocol, running_stats

    rng = np.random.default_rng(0)
    sums = np.stack([[rng.normal(), rng.uniform(5, 6), n] for n in (10.0, 20.0, 30.0, 40.0)])
    means = sums[:, 0] / sums[:, 2]
    assert running_stats(sums)[0] == pytest.approx(means[1:].mean(), rel=1e-12)  # the first batch drops out
    assert running_stats(sums[:1])[0] == pytest.approx(means[0], rel=1e-12)
    with pytest.raises(EvarError):
        running_stats(np.zeros((0, 3)))
    # EVAR reads batches until it has 5,000 clips: 20 batches of 256 (5,120 clips) out of 6,000.
    batches = EvarProtocol(batch_size=256).stats_batches(np.arange(6000))
    assert len(batches) == 20 and len(np.unique(np.concatenate(batches))) == 5120
    assert [len(b) for b in EvarProtocol(batch_size=256).stats_batches(np.arange(300))] == [256, 44]


def make_task(tmp_path, folds=False):
    """A user task of 2-class clips from 0.4 s to 2.4 s long, with a 1-s unit."""
    seconds = [0.4 + 0.2 * (i % 11) for i in range(24)]
    names = write_clips(tmp_path / 'audio', seconds)
    column = 'fold' if folds else 'split'
    cells = [str(i % 2 + 1) if folds else ('test' if i % 4 == 0 else 'train') for i in range(24)]
    (tmp_path / 'meta.csv').write_text(f'file_name,label,{column}\n' + ''.join(
        f'{n},{"ab"[i % 3 == 0]},{c}\n' for i, (n, c) in enumerate(zip(names, cells))))
    (tmp_path / 'task.yaml').write_text('metadata: meta.csv\ndata: audio\nunit_sec: 1.0\nname: varied\n'
                                        + ('folds: 2\n' if folds else ''))
    return tmp_path / 'task.yaml'


def test_results_row_records_the_protocol_and_the_cache_key_differs(tmp_path):
    from evar.heads.base import HeadOptions
    from evar.modes.linear import lineareval
    from evar.results import read_rows

    task = make_task(tmp_path)
    out = {}
    fixed = '+norm_stats=[0.0,1.0]'  # a model without task statistics (the key then names only crop and padding)
    for options in (fixed, f'evar_protocol=true,{fixed}'):
        lineareval(ROOT / 'config' / 'melspec.yaml', str(task), options=options, head=HeadOptions(head='logreg'),
                   work_root=tmp_path / 'work', results_dir=tmp_path / 'results', logs_dir=tmp_path / 'logs',
                   device='cpu', progress=False)
    rows = read_rows(tmp_path / 'results' / 'scores.csv')
    off, on = (json.loads(r.settings) for r in rows)
    assert 'evar_protocol' not in off['run'] and 'EVAR protocol' not in rows[0].report
    assert on['run']['evar_protocol'] == ['random_crop', 'running_stats', 'zero_padding']
    assert 'EVAR protocol random_crop+running_stats+zero_padding' in rows[1].report
    assert rows[0].run_id != rows[1].run_id
    keys = [json.loads(p.read_text()) for p in sorted((tmp_path / 'work' / 'cache').glob('embs-*.json'))]
    assert len(keys) == 2
    out = {('evar_protocol' in k): np.load(p.with_suffix('.npy'))
           for k, p in zip(keys, sorted((tmp_path / 'work' / 'cache').glob('embs-*.json')))}
    # melspec takes no statistics from the task: the key names only the parts that change its embeddings.
    assert [k['evar_protocol'] for k in keys if 'evar_protocol' in k] == [{'parts': ['random_crop', 'zero_padding'],
                                                                            'seed': 42}]
    # Clips of exactly the unit are unchanged; shorter ones (padding) and longer training ones (crops) change.
    lengths = np.array([0.4 + 0.2 * (i % 11) for i in range(24)])
    same = np.all(np.isclose(out[True], out[False], rtol=1e-6, atol=1e-6), axis=1)
    assert same[np.isclose(lengths, 1.0)].all() and not same[lengths < 0.99].any()
    test_long = (np.arange(24) % 4 == 0) & (lengths > 1.01)
    assert same[test_long].all() and not same[~(np.arange(24) % 4 == 0) & (lengths > 1.01)].any()


def test_kfold_crops_depend_on_the_fold(tmp_path):
    """A k-fold task's clip is a test clip in one fold (head crop) and a training clip in the others (random)."""
    from evar.config import load_config
    from evar.data import read_metadata
    from evar.embed.source import TaskEmbeddings
    from evar.tasks import get_task

    task = get_task(str(make_task(tmp_path, folds=True)))
    meta = read_metadata(task.metadata_path(tmp_path / 'work'))

    def source(options):
        options = ','.join([o for o in (options, '+norm_stats=[0.0,1.0]') if o])  # no task statistics
        return TaskEmbeddings(load_config(ROOT / 'config' / 'melspec.yaml', options), task, meta, tmp_path / 'work',
                              'cpu', progress=False)

    on, off = source('evar_protocol=[random_crop]'), source('')
    assert on.protocol_fields(1, None) != on.protocol_fields(2, None) and off.protocol_fields(1, None) == {}
    head = np.asarray(off.embeddings(1, np.arange(0)))
    fold1, fold2 = np.asarray(on.embeddings(1, np.arange(0))), np.asarray(on.embeddings(2, np.arange(0)))
    long_clip = 5  # 1.4 s, fold 2 (i % 2 + 1): random crop in fold 1, head in fold 2
    assert meta.folds[long_clip] == 2
    np.testing.assert_array_equal(fold2[long_clip], head[long_clip])
    assert not np.allclose(fold1[long_clip], head[long_clip])
    assert len(list((tmp_path / 'work' / 'cache').glob('embs-*.npy'))) == 3
