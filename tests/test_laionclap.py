"""LAION-CLAP from laion_clap checkpoint files (evar.models.laionclap): strict loading of a tiny random checkpoint in
the package's layout, the front end against transformers' ClapFeatureExtractor feeding the same random ClapModel,
encode_text against ClapModel's own text features, fusion's views, and the tiny model through zeroshot.py and
retr_a2t_t2a.py on real clips (tests/helpers/clap_scripts.py)."""

import numpy as np
import pytest
import torch

from helpers import ROOT, needs_shared
from helpers.clap_scripts import check_retrieval, check_zeroshot_esc50
from helpers.tiny_laionclap import random_clap, write_laionclap

from evar.errors import EvarError
from evar.models import create_model
from evar.models.laionclap import fusion_views


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return write_laionclap(tmp_path_factory.mktemp('laionclap'))


def test_unfused_embedding_is_clap_on_the_feature_extractors_repeat_padded_log_mel(tiny):
    import transformers

    clap, _ = random_clap()
    model = create_model('laionclap', **tiny).eval()
    assert (model.embedding_dim, model.frame_hop_sec, model.fusion) == (16, 10.0, False)
    # transformers' numpy front end with laion_clap's settings: repeatpad to 10 s, |STFT|^2 (1024, hop 480, periodic
    # Hann, centred, reflect), Slaney mel filters 50-14000 Hz (torchlibrosa's), 10 log10(max(x, 1e-10)).
    fe = transformers.ClapFeatureExtractor(truncation='rand_trunc', padding='repeatpad', frequency_min=50)
    rng = np.random.default_rng(0)
    lengths = [3 * 48000 + 17, 12 * 48000]  # 3 s: 3 copies + zeros; 12 s: a 10 s piece and a 2 s one
    wav = torch.from_numpy(rng.standard_normal((2, lengths[1])).astype(np.float32) * 0.1)
    with torch.inference_mode():
        frames = model(wav, torch.tensor(lengths))
        assert frames.mask.sum(1).tolist() == [1, 2]
        for (clip, start, stop), got in zip([(0, 0, lengths[0]), (1, 0, 480000), (1, 480000, lengths[1])],
                                            [frames.embeddings[0, 0], frames.embeddings[1, 0], frames.embeddings[1, 1]]):
            mel = fe(wav[clip, start:stop].numpy(), sampling_rate=48000, return_tensors='pt')['input_features']
            ref = clap.get_audio_features(input_features=mel, is_longer=torch.zeros(1, 1, dtype=torch.bool))
            ref = getattr(ref, 'pooler_output', ref)  # transformers 5 returns a model output
            np.testing.assert_allclose(got.numpy(), torch.nn.functional.normalize(ref, dim=-1)[0].numpy(), atol=2e-5)


def test_encode_text_is_clap_text_features_unit_norm_truncated_at_77_tokens(tiny):
    import transformers

    clap, _ = random_clap()
    model = create_model('laionclap', **tiny).eval()
    texts = ['a dog barks', 'rain', 'x' * 100]  # 102 tokens with <s> and </s>: cut to 77
    tok = transformers.AutoTokenizer.from_pretrained(tiny['text_model'])
    with torch.inference_mode():
        got = model.encode_text(texts)
        refs = []
        for t in texts:  # each alone, unpadded: padding must not change the pooled [CLS] state
            ids = tok([t], truncation=True, max_length=77, return_tensors='pt')
            ref = clap.get_text_features(input_ids=ids['input_ids'], attention_mask=ids['attention_mask'])
            refs.append(getattr(ref, 'pooler_output', ref)[0])
    assert got.shape == (3, 16)
    np.testing.assert_allclose(got.norm(dim=-1).numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(got.numpy(), torch.nn.functional.normalize(torch.stack(refs), dim=-1).numpy(),
                               atol=2e-5)
    assert len(tok(['x' * 100])['input_ids'][0]) == 102


def test_fused_short_clip_matches_transformers_feature_extractor(tmp_path):
    import transformers

    values = write_laionclap(tmp_path, fusion=True)
    clap, _ = random_clap(fusion=True)
    model = create_model('laionclap', **values).eval()
    assert model.fusion and model.frame_hop_sec is None
    wave = np.random.default_rng(1).standard_normal(2 * 48000 + 5).astype(np.float32) * 0.1
    # HTK mel, 4 equal views. The extractor marks one clip of a batch with none longer than 10 s as longer (laion's
    # training trick); laion_clap's inference does not, so is_longer is False here.
    fe = transformers.ClapFeatureExtractor(truncation='fusion', padding='repeatpad', frequency_min=50)
    inputs = fe(wave, sampling_rate=48000, return_tensors='pt')
    with torch.inference_mode():
        ref = clap.get_audio_features(input_features=inputs['input_features'], is_longer=torch.zeros(1, 1).bool())
        ref = torch.nn.functional.normalize(getattr(ref, 'pooler_output', ref), dim=-1)[0]
        got = model.embed(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))[0]
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-4)


def test_fusion_views_take_the_middle_start_of_each_third():
    mel = torch.arange(8 * 2, dtype=torch.float32).reshape(8, 2)  # 8 frames, chunks of 3: starts 0..5
    views, longer = fusion_views(mel, 3)
    assert longer and views.shape == (4, 3, 2)
    # np.array_split(range(6), 3) = [0, 1], [2, 3], [4, 5]: middles 1, 3, 5.
    for view, start in zip(views[1:], (1, 3, 5)):
        np.testing.assert_array_equal(view.numpy(), mel[start:start + 3].numpy())
    shrunk = torch.nn.functional.interpolate(mel[None, None], size=(3, 2), mode='bilinear', antialias=True)[0, 0]
    np.testing.assert_allclose(views[0].numpy(), shrunk.numpy())
    same, longer = fusion_views(mel[:3], 3)
    assert not longer and bool((same == mel[:3]).all())


def test_missing_file_wrong_keys_and_wrong_settings_are_clear_errors(tiny, tmp_path):
    with pytest.raises(EvarError, match='huggingface.co/lukewys/laion_clap'):
        create_model('laionclap', weight_file=str(tmp_path / '630k-audioset-best.pt'), text_model=tiny['text_model'])
    renamed = write_laionclap(tmp_path / 'a', edit=lambda s: s.update(
        {'audio_projection.2.b': s.pop('audio_projection.2.bias')}))
    with pytest.raises(EvarError, match=r"Missing.*audio_projection.linear2.bias.*unexpected.*audio_projection.2.b"):
        create_model('laionclap', **renamed)
    extra = write_laionclap(tmp_path / 'b', edit=lambda s: s.update({'text_branch.extra.weight': torch.zeros(1)}))
    with pytest.raises(EvarError, match='text_branch.extra.weight'):
        create_model('laionclap', **extra)
    swin = write_laionclap(tmp_path / 'c', edit=lambda s: s.pop('audio_branch.norm.weight'))
    with pytest.raises(EvarError, match='norm.weight'):
        create_model('laionclap', **swin)
    filters = write_laionclap(tmp_path / 'd', edit=lambda s: s['audio_branch.logmel_extractor.melW'].mul_(2))
    with pytest.raises(EvarError, match='mel filters'):
        create_model('laionclap', **filters)
    for bad, match in (({'amodel': 'HTSAT-base'}, 'not HTSAT-base'), ({'amodel': 'PANN-14'}, 'HTSAT-tiny'),
                       ({'enable_fusion': True}, 'enable_fusion: False'), ({'sample_rate': 32000}, '48000'),
                       ({'text_model': str(tmp_path)}, 'text tower configuration')):
        with pytest.raises(EvarError, match=match):
            create_model('laionclap', **{**tiny, **bad})


def test_evar_laionclap_yaml_loads_as_evar_names_it(tiny, tmp_path):
    from evar.config import load_config

    evar_yaml = tmp_path / 'laionclap.yaml'  # EVAR's config/laionclap.yaml at 88ba772 (weight_file set here)
    evar_yaml.write_text(f'audio_repr: ar_laionclap.AR_LAIONCLAP\nweight_file: {tiny["weight_file"]}\nfeature_d: 768\n'
                         'sample_rate: 48000\nbatch_size: 128\nlr_lineareval: 0.0003\nreport_per_epochs: 50\n'
                         'early_stop_epochs: 20\nwarmup_epochs: 5\nmixup: 0.5\nft_bs: 128\nft_lr: 2.0\n'
                         'ft_early_stop_epochs: -1\nft_epochs: 200\nft_freq_mask: 8\nft_time_mask: 64\n'
                         'ft_noise: 0.0\nft_rrc: True\n')
    cfg = load_config(evar_yaml)
    assert cfg.audio_repr == 'laionclap' and cfg.params.weight_file == tiny['weight_file']
    ours = load_config(ROOT / 'config' / 'laionclap.yaml')
    assert ours.audio_repr == 'laionclap' and ours.params.text_model == 'roberta-base'
    assert load_config(ROOT / 'config' / 'laionclap_fusion.yaml').params.enable_fusion is True


@pytest.fixture(scope='module')
def zs_config(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'laionclap_tiny.yaml'
    path.write_text('audio_repr: laionclap\n' + ''.join(f'{k}: {v}\n' for k, v in tiny.items()))
    return path


@needs_shared
@pytest.mark.slow
def test_zeroshot_script_on_esc50_matches_numpy_reference(zs_config, tmp_path):
    check_zeroshot_esc50(tmp_path, zs_config, dim=16, every=4)  # 104 of the 414 clips: 10 s inputs each


@needs_shared
@pytest.mark.slow
def test_retrieval_script_on_real_clips_matches_numpy_reference(zs_config, tmp_path):
    row = check_retrieval(tmp_path, zs_config, dim=16)
    assert row['n_clips'] == '6' and row['n_captions'] == '22'
