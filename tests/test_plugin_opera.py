"""plugin/OPERA: evar features written where OPERA's linear_eval reads them, checked through the host's own reads.

The host (evelyn0414/OPERA at 3622310e) cannot be installed here (TensorFlow, opensmile, lightning...), so the test
builds a small copy of its layout from real clips and repeats what linear_eval does: `feature = pretrain + str(dim)`,
`np.load(feature_dir + feature + "_feature.npy").squeeze()`, `feat_dim = x.shape[1]`.
"""

import importlib.util
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from evar.audio import load_audio
from evar.config import load_config
from evar.errors import EvarError
from evar.models import create_model
from evar.models.base import stats_from_sums
from helpers import BYOLA_D512, ROOT, SHARED, needs_byola, needs_shared

DATA = SHARED / 'data'
# (source clip, split): a long piano note (16 s: EVAR's plugin cropped such clips at random), spoken digits, yes/no.
CLIPS = [('piano/A2v10.flac', 'train'), ('fsdd/recordings/0_george_0.flac', 'train'),
         ('yesno/0_0_0_0_1_1_1_1.flac', 'test'), ('fsdd/recordings/3_jackson_1.flac', 'train'),
         ('ESC-50/audio/2-103426-A-3.flac', 'val')]


def _plugin():
    spec = importlib.util.spec_from_file_location('evar_opera', ROOT / 'plugin' / 'OPERA' / 'evar_opera.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules['evar_opera'] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _opera_layout(root, list_name, split_name, feature_dir):
    """OPERA's folder: .wav clips under datasets/ (one at 44.1 kHz, as ICBHI's are), the processing step's list of
    paths relative to the OPERA folder and its split array."""
    import soxr

    (root / feature_dir).mkdir(parents=True)
    (root / 'datasets' / 'db').mkdir(parents=True)
    paths = []
    for k, (name, _) in enumerate(CLIPS):
        wav, rate = sf.read(DATA / name, dtype='float32')
        if k == 1:
            wav, rate = soxr.resample(wav, rate, 44100), 44100
        rel = f'datasets/db/{k}_{name.split("/")[-1][:-5]}.wav'
        sf.write(root / rel, wav, rate, subtype='FLOAT')
        paths.append(rel)
    np.save(root / feature_dir / list_name, np.array(paths))
    np.save(root / feature_dir / split_name, np.array([s for _, s in CLIPS]))
    return paths


def _host_reads(root, feature_dir, pretrain, dim, suffix):
    """linear_eval's read of the features (src/benchmark/linear_eval.py, run from the OPERA folder)."""
    feature = pretrain + str(dim)
    x = np.load(str(root / feature_dir) + '/' + feature + suffix).squeeze()
    return x, x.shape[1]


def _alone(model, root, path):
    """evar's embedding of one clip by itself, whole, at the model's rate: the reference for batched extraction."""
    wav, _ = load_audio(root / path, model.sample_rate)
    with torch.inference_mode():
        return model.embed(torch.from_numpy(wav)[None], torch.tensor([len(wav)])).numpy()[0]


@needs_byola
@needs_shared
def test_byola_icbhi_features_whole_clips_train_statistics(tmp_path):
    plugin = _plugin()
    paths = _opera_layout(tmp_path, 'sound_dir_loc.npy', 'split.npy', 'feature/icbhidisease_eval')
    opts = f'weight_file={BYOLA_D512},feature_d=512'
    out = plugin.extract_task_features('icbhidisease', ROOT / 'config' / 'byola.yaml', 'evar_byola', opts,
                                       opera_root=tmp_path, batch_size=2)
    assert out.path == tmp_path / 'feature/icbhidisease_eval/evar_byola512_feature.npy'
    assert out.linear_eval == 'python -m src.benchmark.linear_eval --task icbhidisease --pretrain evar_byola --dim 512'
    x, feat_dim = _host_reads(tmp_path, 'feature/icbhidisease_eval', 'evar_byola', out.dim, '_feature.npy')
    assert x.shape == (len(CLIPS), 512) and feat_dim == 512 and x.dtype == np.float32

    # Statistics by hand: summed over the three training clips only (not the test or val clip), each clip whole.
    cfg = load_config(ROOT / 'config' / 'byola.yaml', opts)
    model = create_model(cfg.audio_repr, params=cfg.params).eval()
    sums = torch.zeros(3, dtype=torch.float64)
    for path, (_, split) in zip(paths, CLIPS):
        if split == 'train':
            wav, _ = load_audio(tmp_path / path, 16000)
            with torch.inference_mode():
                sums += model.stat_sums(*model.features(torch.from_numpy(wav)[None], torch.tensor([len(wav)])))
    mean, std = stats_from_sums(sums)
    assert out.norm_stats == pytest.approx((mean, std), rel=1e-6)
    model.set_norm_stats(mean, std)
    for row, path in zip(x, paths):  # batched and padded = each clip alone, whole
        np.testing.assert_allclose(row, _alone(model, tmp_path, path), rtol=1e-4, atol=1e-4)
    piano, _ = load_audio(tmp_path / paths[0], 16000)
    with torch.inference_mode():  # a 10 s crop of the piano note would give another embedding
        crop = model.embed(torch.from_numpy(piano[:160000])[None], torch.tensor([160000])).numpy()[0]
    assert np.abs(crop - x[0]).max() > 1e-2


@needs_shared
def test_melspec_copd_command_line_and_errors(tmp_path, monkeypatch, capsys):
    plugin = _plugin()
    paths = _opera_layout(tmp_path, 'sound_dir_loc.npy', 'train_test_split.npy', 'feature/copd_eval')
    monkeypatch.chdir(tmp_path)  # OPERA's scripts run from its folder
    # the log-mel as it is (melspec standardises with training statistics, as EVAR's; BYOL-A's test covers that)
    mel = tmp_path / 'melspec.yaml'
    mel.write_text((ROOT / 'config' / 'melspec.yaml').read_text() + 'norm_stats: [0.0, 1.0]\n')
    assert plugin.main(['copd', str(mel), 'evar_mel']) == 0
    printed = capsys.readouterr().out
    assert 'python -m src.benchmark.linear_eval --task copd --pretrain evar_mel --dim 64' in printed
    x, feat_dim = _host_reads(tmp_path, 'feature/copd_eval', 'evar_mel', 64, '_feature.npy')
    assert x.shape == (len(CLIPS), 64) and feat_dim == 64
    model = create_model('melspec', params=load_config(mel).params).eval()
    for row, path in zip(x, paths):
        np.testing.assert_allclose(row, _alone(model, tmp_path, path), rtol=1e-4, atol=1e-4)

    with pytest.raises(EvarError, match='baseline'):
        plugin.extract_task_features('copd', ROOT / 'config' / 'melspec.yaml', 'vggish')
    with pytest.raises(EvarError, match='Unknown OPERA task'):
        plugin.extract_task_features('copdd', ROOT / 'config' / 'melspec.yaml', 'evar_mel')
    with pytest.raises(EvarError, match='kauh_eval/sound_dir_loc_subset.npy does not exist'):
        plugin.extract_task_features('kauh', ROOT / 'config' / 'melspec.yaml', 'evar_mel')
    np.save(tmp_path / 'feature/copd_eval/train_test_split.npy', np.array(['train'] * 3))
    with pytest.raises(EvarError, match='3 entries for 5 clips'):
        plugin.extract_task_features('copd', ROOT / 'config' / 'melspec.yaml', 'evar_mel')


def test_coswara_training_rows_follow_linear_eval_split(tmp_path):
    """Coswara's linear_eval splits with scikit-learn (test_size 0.2, random_state 1337, stratified by label): the
    statistics rows are that split's training rows, which never include its test rows."""
    from sklearn.model_selection import train_test_split

    plugin = _plugin()
    spec = plugin.OPERA_TASKS['coswarasex']
    assert spec.stratify_labels == 'cough_aligned_sex_label_cough-shallow.npy'
    assert spec.sound_list == 'cough_aligned_filenames_sex_w_cough-shallow.npy'
    labels = np.array(['male'] * 12 + ['female'] * 8)
    (tmp_path / spec.feature_dir).mkdir(parents=True)
    np.save(tmp_path / spec.feature_dir / spec.stratify_labels, labels)
    rows = plugin.train_rows('coswarasex', spec, tmp_path, 20)
    x_train, x_test, _, _ = train_test_split(np.arange(20), labels, test_size=0.2, random_state=1337, stratify=labels)
    assert len(rows) == 16 and set(rows) == set(x_train) and not set(rows) & set(x_test)
