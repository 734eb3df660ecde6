"""M2D-CLAP (evar.models.m2d_clap): strict loading of the publisher's layout, the two outputs (EVAR's backbone
features, the joint space), encode_text against transformers' BERT pooled by hand, and the tiny model through
zeroshot.py and retr_a2t_t2a.py on real clips."""

import csv

import numpy as np
import pytest
import torch

from helpers import ROOT, SHARED, batch_equals_single, needs_shared
from helpers.tiny_m2d_clap import FOLDER, write_m2d_clap, write_text_tower

from evar.errors import EvarError
from evar.models import create_model
from evar.models.audio_text import text_route


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('m2d_clap')
    return {'weight_file': str(write_m2d_clap(root)), 'text_model': str(write_text_tower(root / 'text')),
            'root': root}


def _joint(tiny, **extra):
    return create_model('m2d_clap', weight_file=tiny['weight_file'], text_model=tiny['text_model'],
                        output='audio_embeds', **extra).eval()


def _np_mlp(x, state, prefix):
    h = np.maximum(x @ state[f'{prefix}.0.weight'].numpy().T + state[f'{prefix}.0.bias'].numpy(), 0)
    return h @ state[f'{prefix}.2.weight'].numpy().T + state[f'{prefix}.2.bias'].numpy()


def test_backbone_is_m2d_flat_features_and_joint_space_projects_the_mean_token(tiny):
    m2d = create_model('m2d', weight_file=tiny['weight_file'], flat_features=True).eval()
    backbone = create_model('m2d_clap', weight_file=tiny['weight_file']).eval()
    joint = _joint(tiny)
    assert not hasattr(backbone, 'encode_text') and hasattr(joint, 'encode_text')
    with pytest.raises(EvarError, match='no text side'):  # the text modes switch to audio_embeds (TEXT_MODE_OPTIONS)
        text_route(backbone, 'config/m2d_clap.yaml')
    assert (backbone.embedding_dim, joint.embedding_dim, joint.frame_hop_sec) == (128, 128, None)
    torch.manual_seed(1)
    lengths = torch.tensor([40000, 16000, 3000])  # 2.5 s spans two 208-frame windows
    wav = torch.randn(3, 40000) * 0.1
    state = torch.load(tiny['weight_file'], weights_only=False)['model']
    with torch.inference_mode():
        ref = m2d.embed(wav, lengths)
        np.testing.assert_array_equal(backbone.embed(wav, lengths).numpy(), ref.numpy())
        frames = joint(wav, lengths)
    assert frames.embeddings.shape == (3, 1, 128) and bool(frames.mask.all())
    np.testing.assert_allclose(frames.embeddings[:, 0].numpy(), _np_mlp(ref.numpy(), state, 'audio_proj'),
                               rtol=1e-4, atol=1e-5)
    batch_equals_single(joint, [40000, 16000, 3000])


def _np_semantic_token(tokens, state, depth=2):
    """Reference of the semantic-token audio_proj on one clip's tokens [N, D] (numpy float64, one head)."""
    from scipy.special import erf

    p = {k[len('audio_proj.'):]: v.double().numpy() for k, v in state.items() if k.startswith('audio_proj.')}

    def ln(x, name):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * p[f'{name}.weight'] \
            + p[f'{name}.bias']

    def lin(x, name):
        return x @ p[f'{name}.weight'].T + p[f'{name}.bias']

    x = np.concatenate([p['sem_token'][0], tokens], 0)
    for i in range(depth):
        b = f'sem_blocks.{i}.'
        q, k, v = np.split(lin(ln(x, b + 'norm1'), b + 'attn.qkv'), 3, axis=1)
        a = q @ k.T / np.sqrt(q.shape[1])
        a = np.exp(a - a.max(1, keepdims=True))
        x = x + lin((a / a.sum(1, keepdims=True)) @ v, b + 'attn.proj')
        h = lin(ln(x, b + 'norm2'), b + 'mlp.fc1')
        x = x + lin(0.5 * h * (1 + erf(h / np.sqrt(2))), b + 'mlp.fc2')
    return ln(x[0], 'norm')


def test_semantic_token_audio_proj_attends_to_every_patch_token_of_the_clip(tiny, tmp_path):
    from helpers.tiny_m2d_clap import semantic_heads

    def swap(state):
        for k in [k for k in state if k.startswith('audio_proj.')]:
            del state[k]
        state.update(semantic_heads(128))

    path = write_m2d_clap(tmp_path, 'm2d_clap_vit_base-80x208p16x16-sem', edit=swap)
    model = create_model('m2d_clap', weight_file=str(path), text_model=tiny['text_model'], output='audio_embeds')
    stacked = create_model('m2d', weight_file=str(path)).eval()  # each column's 5 tokens stacked: 5 x 128
    state = torch.load(path, weights_only=False)['model']
    with torch.inference_mode():
        batch = batch_equals_single(model.eval(), [40000, 7000])
        for i, n in enumerate((40000, 7000)):
            torch.manual_seed(0)  # batch_equals_single's waves
            w = torch.randn(2, 40000)[i:i + 1, :n] * 0.1
            frames = stacked(w, torch.tensor([n]))
            valid = frames.embeddings[0, :int(frames.mask.sum())].double().numpy()  # masked columns are padding
            ref = _np_semantic_token(valid.reshape(-1, 128), state)
            np.testing.assert_allclose(batch[i].numpy(), ref, rtol=1e-4, atol=1e-4)


def test_encode_text_is_bert_mean_pooled_then_text_proj_unit_norm(tiny):
    import transformers

    model = _joint(tiny)
    texts = ['dog barking', 'the sound of rain can be heard', 'a']
    with torch.inference_mode():
        emb = model.encode_text(texts).numpy()
        tok = transformers.AutoTokenizer.from_pretrained(tiny['text_model'])
        bert = transformers.AutoModel.from_pretrained(tiny['text_model']).eval()
        hidden = [bert(**tok([t], return_tensors='pt')).last_hidden_state[0].numpy() for t in texts]
        cls = create_model('m2d_clap', weight_file=tiny['weight_file'], text_model=tiny['text_model'],
                           output='audio_embeds', text_pooling='cls').encode_text(texts).numpy()
    state = torch.load(tiny['weight_file'], weights_only=False)['model']
    w, b = state['text_proj.weight'].numpy(), state['text_proj.bias'].numpy()
    for pooled, got in (([h.mean(0) for h in hidden], emb), ([h[0] for h in hidden], cls)):
        ref = np.stack(pooled) @ w.T + b  # each text alone: no padding, so the plain mean is the masked mean
        ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        assert got.shape == (3, 128)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(got, ref, atol=2e-5)


def test_text_tower_included_in_the_checkpoint_is_loaded_strictly(tiny):
    import transformers

    other = write_text_tower(tiny['root'] / 'text_ti', seed=5)
    inner = transformers.AutoModel.from_pretrained(other).state_dict()
    folder = 'm2d_clap_vit_base-80x208p16x16p16kpBpTI-tiny'
    path = write_m2d_clap(tiny['root'], folder, edit=lambda s: s.update(
        {f'text_encoder.text_encoder.{k}': v for k, v in inner.items()}))
    with torch.inference_mode():
        got = create_model('m2d_clap', weight_file=str(path), text_model=tiny['text_model'],
                           output='audio_embeds').encode_text(['rain']).numpy()
        ref = create_model('m2d_clap', weight_file=str(path), text_model=str(other), output='audio_embeds',
                           text_pooling='cls').encode_text(['rain']).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-6)  # tag B: [CLS] pooling, and the checkpoint's tower weights
    bad = write_m2d_clap(tiny['root'] / 'bad', folder, edit=lambda s: s.update(
        {'text_encoder.text_encoder.extra.weight': torch.zeros(1)}))
    with pytest.raises(EvarError, match='text_encoder'):
        create_model('m2d_clap', weight_file=str(bad), text_model=tiny['text_model'], output='audio_embeds')


def test_wrong_keys_missing_heads_and_bad_settings_are_clear_errors(tiny, tmp_path):
    renamed = write_m2d_clap(tmp_path / 'renamed', edit=lambda s: s.update({'audio_proj.2.b': s.pop('audio_proj.2.bias')}))
    with pytest.raises(EvarError, match=r'audio_proj.*Missing: \[.2.bias.\]'):
        create_model('m2d_clap', weight_file=str(renamed), text_model=tiny['text_model'], output='audio_embeds')
    enc_only = write_m2d_clap(tmp_path / 'enc', heads=False)
    assert create_model('m2d_clap', weight_file=str(enc_only)).embedding_dim == 128  # backbone needs no heads
    with pytest.raises(EvarError, match='no audio_proj'):
        create_model('m2d_clap', weight_file=str(enc_only), output='audio_embeds')
    with pytest.raises(EvarError, match='m2d_clap_vit_base-80x608p16x16-240128.zip'):
        create_model('m2d_clap', weight_file=str(tmp_path / FOLDER / 'none.pth'))
    for bad, match in (({'output': 'joint'}, 'output must be one of'),
                       ({'output': 'audio_embeds', 'flat_features': False}, 'flat_features true'),
                       ({'output': 'audio_embeds', 'text_model': str(tmp_path)}, 'cannot load the text tower')):
        with pytest.raises(EvarError, match=match):
            create_model('m2d_clap', **{'weight_file': tiny['weight_file'], 'text_model': tiny['text_model'], **bad})


def test_evar_m2d_clap_yaml_loads_as_evar_names_it(tiny, tmp_path):
    from evar.config import load_config

    evar_yaml = tmp_path / 'm2d_clap.yaml'  # EVAR's config/m2d_clap.yaml at 88ba772 (fine-tuning keys left out)
    evar_yaml.write_text(
        'audio_repr: ar_m2d.AR_M2D_CLAP\n'
        f'weight_file: {tiny["weight_file"]}\n'
        'feature_d: 3840\nsample_rate: 16000\nn_fft: 400\nwindow_size: 400\nhop_size: 160\nn_mels: 80\n'
        'f_min: 50\nf_max: 8000\nwindow: hanning\noutput_layers: [-1]\nencoder_only: True\ndur_frames:\n'
        'freeze_embed:\nflat_features: True\nbatch_size: 128\nlr_lineareval: 0.00003\ntraining_mask: 0.0\n')
    cfg = load_config(evar_yaml)
    assert cfg.audio_repr == 'm2d_clap' and cfg.params.output == 'backbone' and cfg.params.flat_features
    # EVAR's m2d.yaml-style mean/std are accepted and, as in EVAR's RuntimeM2D, the checkpoint's norm_stats win.
    evar_yaml.write_text(evar_yaml.read_text() + 'mean: -7.1\nstd: 4.2\n')
    assert load_config(evar_yaml).params.norm_stats is None
    for name in ('m2d_clap', 'm2d_clap_zs', 'm2d_clap_32k'):
        assert load_config(ROOT / 'config' / f'{name}.yaml').audio_repr == 'm2d_clap'


@pytest.fixture(scope='module')
def zs_config(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'm2d_clap_tiny.yaml'
    path.write_text(f'audio_repr: m2d_clap\nweight_file: {tiny["weight_file"]}\ntext_model: {tiny["text_model"]}\n'
                    'output: audio_embeds\n')
    return path


@needs_shared
@pytest.mark.slow
def test_zeroshot_script_on_esc50_matches_reference_from_the_model(tiny, zs_config, tmp_path):
    from helpers.clap_scripts import cached_embeddings, check_zeroshot_esc50

    from evar.audio import load_audio

    check_zeroshot_esc50(tmp_path, zs_config, 128)
    audio, text = cached_embeddings(tmp_path / 'work')
    with open(tmp_path / 'work' / 'metadata' / 'esc50.csv', newline='') as f:
        meta = list(csv.DictReader(f))
    classes = sorted({r['label'] for r in meta})
    # What was scored is the model's joint-space embedding of whole clips and of the captions (some checked here).
    model = _joint(tiny)
    with torch.inference_mode():
        for i in (0, 200):
            wav = torch.from_numpy(load_audio(SHARED / 'data' / 'ESC-50' / meta[i]['file_name'], 16000)[0])
            got = model.embed(wav[None], torch.tensor([len(wav)]))[0].numpy()
            np.testing.assert_allclose(audio[i], got, rtol=1e-4, atol=1e-5)
        captions = model.encode_text([f'the sound of {c.replace("_", " ")}' for c in classes[:2]]).numpy()
    np.testing.assert_allclose(text[[0, 2]], captions, atol=1e-5)  # two templates per class, class by class


@needs_shared
@pytest.mark.slow
def test_retrieval_script_on_real_clips_matches_reference_ranks(tiny, tmp_path):
    from helpers.clap_scripts import check_retrieval

    # EVAR's layout: the config gives backbone features (linear evaluation); the text modes switch to the joint
    # space themselves (M2DCLAP.TEXT_MODE_OPTIONS)
    config = tmp_path / 'm2d_clap_backbone.yaml'
    config.write_text(f'audio_repr: m2d_clap\nweight_file: {tiny["weight_file"]}\ntext_model: {tiny["text_model"]}\n'
                      'output: backbone\n')
    row = check_retrieval(tmp_path, config, 128)
    assert row['mode'] == 'retrieval'


def test_text_modes_run_evar_config_in_the_joint_space():
    from evar.models.audio_text import text_mode_options

    assert text_mode_options(ROOT / 'config' / 'm2d_clap.yaml', 'batch_size=4') == \
        '+output=audio_embeds,batch_size=4,crop=full'  # the user's options come after (they may set output)
    assert text_mode_options(ROOT / 'config' / 'melspec.yaml', '') == 'crop=full'
