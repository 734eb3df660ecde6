import pytest

from evar.config import load_config
from evar.params import parse_value, split_options
from evar.errors import EvarError

from helpers import ROOT


def test_options_override_add_and_parse_yaml_scalars():
    cfg = load_config(ROOT / 'config/melspec.yaml', 'batch_size=16,n_mels=32,+num_workers=0,lr_lineareval=1e-3')
    assert cfg.run.batch_size == 16 and cfg.run.num_workers == 0
    assert cfg.run.lr_lineareval == pytest.approx(0.001)
    with pytest.raises(EvarError, match='n_mels'):  # a list where an int is expected
        load_config(ROOT / 'config/byola_d512.yaml', 'n_mels=[1, 2]')
    cfg = load_config(ROOT / 'config/byola_d512.yaml', '+norm_stats=[-5.5, 5.0],weight_file=/x.pth')
    assert cfg.model_params['norm_stats'] == [-5.5, 5.0] and cfg.model_params['weight_file'] == '/x.pth'


def test_split_options_keeps_commas_inside_lists():
    assert split_options('a=1,+b=[1, 2],c=x') == [('a', '1', False), ('b', '[1, 2]', True), ('c', 'x', False)]
    assert parse_value('true', 'k') is True and parse_value('2', 'k') == 2 and parse_value('none', 'k') == 'none'


def test_unknown_key_lists_valid_keys():
    with pytest.raises(EvarError) as e:
        load_config(ROOT / 'config/melspec.yaml', 'batch_sise=16')
    assert "'batch_sise'" in str(e.value) and 'batch_size' in str(e.value) and 'n_mels' in str(e.value)


def test_run_settings_need_no_plus_and_model_keys_do():
    """EVAR's run scripts pass name=..., crop, cache_dtype without '+': run settings may be set either way."""
    cfg = load_config(ROOT / 'config/melspec.yaml', 'name=foo,crop=center,cache_dtype=float16,num_workers=2')
    assert (cfg.name, cfg.run.crop, cfg.run.cache_dtype, cfg.run.num_workers) == ('foo', 'center', 'float16', 2)
    assert load_config(ROOT / 'config/melspec.yaml', '+name=bar').name == 'bar'
    assert load_config(ROOT / 'config/melspec.yaml').run.num_workers is None  # unset stays the default
    with pytest.raises(EvarError, match=r'\+norm_stats=\[1, 2\]'):  # a model key the YAML lacks
        load_config(ROOT / 'config/byola_d512.yaml', 'norm_stats=[1, 2]')


def test_values_are_never_evaluated():
    with pytest.raises(EvarError, match='batch_size'):
        load_config(ROOT / 'config/melspec.yaml', "batch_size=__import__('os').getpid()")


def test_bad_yaml_files(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('audio_repr: melspec\nn_mels: [1,\n')
    with pytest.raises(EvarError, match='not valid YAML'):
        load_config(bad)
    bad.write_text('audio_repr: nosuchmodel\n')
    with pytest.raises(EvarError, match='unknown audio_repr .nosuchmodel.*melspec'):
        load_config(bad)
    bad.write_text('audio_repr: melspec\nn_mel: 64\n')
    with pytest.raises(EvarError, match="unknown key.*n_mel"):
        load_config(bad)
    with pytest.raises(EvarError, match='does not exist'):
        load_config(tmp_path / 'missing.yaml')


def test_evar_alias_loads(tmp_path):
    cfg_file = tmp_path / 'evar_melspec.yaml'
    cfg_file.write_text((ROOT / 'config/melspec.yaml').read_text().replace('audio_repr: melspec',
                                                                         'audio_repr: ar_spec.AR_MelSpec'))
    assert load_config(cfg_file).audio_repr == 'melspec'


def test_evar_fine_tuning_keys_are_accepted(tmp_path):
    """EVAR's model YAMLs carry fine-tuning settings (finetune.py reads them); they load without error."""
    cfg_file = tmp_path / 'evar_opera.yaml'
    cfg_file.write_text('audio_repr: ar_opera.AR_OPERA_CT\nweight_file: external/encoder-operaCT.ckpt\n'
                        'batch_size: 128\nwarmup_epochs: 5\nmixup: 0.5\nft_bs: 64\nft_lr: 0.5\nft_noise: 0.0\n'
                        'training_mask: 0.5\nfreeze_embed: true\n')
    cfg = load_config(cfg_file)
    assert cfg.audio_repr == 'opera_ct' and cfg.run.training_mask == 0.5 and cfg.run.freeze_embed is True
    with pytest.raises(EvarError, match=r"unknown key\(s\) \['trainig_mask'\]"):
        cfg_file.write_text('audio_repr: ar_opera.AR_OPERA_CT\ntrainig_mask: 0.5\n')
        load_config(cfg_file)


# EVAR's own model YAMLs (nttcslab/eval-audio-repr config/), verbatim: config data that must load unchanged.
EVAR_M2D = """# AR parameters such as FFT parameters.
audio_repr: ar_m2d.AR_M2D
weight_file: m2d_vit_base-80x208p16x16p16k-random/random
feature_d: 3840
sample_rate: 16000
n_fft: 400
window_size: 400
hop_size: 160
n_mels: 80
f_min: 50
f_max: 8000
window: hanning

# Statistics for normalization: average and standard deviation
mean: -7.1
std: 4.2

# Model specific parameters.
output_layers: [-1]  # List of layers to stack
encoder_only: True
dur_frames:  # None for no desired number of frames
freeze_embed:  # Set True if freezing PatchEmbed during fine-tuning [2211.09359] How to Fine-Tune Vision Models with SGD

# Linear evaluation/Fine-tuning common parameters.
flat_features: False  # 768-d if True else 3840-d

# Linear evaluaition parameters.
batch_size: 128
lr_lineareval: 0.00003
report_per_epochs: 50
early_stop_epochs: 20

# Fine-tuning parameters.
training_mask: 0.0
warmup_epochs: 5
mixup: 0.5
ft_bs: 128
ft_lr: 2.0
ft_early_stop_epochs: -1  # -1: no early stopping
ft_epochs: 200
ft_freq_mask: 30
ft_time_mask: 192
ft_noise: 0.0
ft_rrc: True
"""
EVAR_DASHENG = """# AR parameters such as FFT parameters.
audio_repr: ar_dasheng.AR_Dasheng
feature_d: 768
sample_rate: 16000
# temporal_pooling_type: mean_max

# Training parameters.
batch_size: 256
lr_lineareval: 0.0003
report_per_epochs: 20
early_stop_epochs: 20

# Model specific parameters.
# model_name: mispeech/dasheng-base
# model_name: mispeech/dasheng-0.6B
model_name: mispeech/dasheng-1.2B
"""
EVAR_HUBERT = """# AR parameters such as FFT parameters.
audio_repr: ar_hubert.AR_Hubert
feature_d: 768
sample_rate: 16000
temporal_pooling_type: mean

# Training parameters.
batch_size: 64
lr_lineareval: 0.0003
report_per_epochs: 20
early_stop_epochs: 20

# Model specific parameters.
pretrained_model: facebook/hubert-base-ls960
# pretrained_model: facebook/hubert-large-ls960-ft
output_layers: [-1]  # list of layers to stack
"""
EVAR_W2V2_FEATURE = """# AR parameters such as FFT parameters.
audio_repr: ar_wav2vec2.AR_Wav2Vec2Feature
feature_d: 512
sample_rate: 16000
temporal_pooling_type: mean_max

# Training parameters.
batch_size: 256
lr_lineareval: 0.0003
report_per_epochs: 20
early_stop_epochs: 20

# Model specific parameters.
wav2vec_model: facebook/wav2vec2-large-960h-lv60
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_evar_model_yamls_load_with_their_keys_mapped(tmp_path):
    m2d = load_config(write(tmp_path, 'm2d.yaml', EVAR_M2D), 'name=M2D_random')
    # EVAR's mean/std never reach M2D's embeddings (RuntimeM2D takes the checkpoint's norm_stats): ignored, so evar
    # takes the checkpoint's too
    assert m2d.audio_repr == 'm2d' and m2d.model_params['norm_stats'] is None and m2d.name == 'M2D_random'
    assert m2d.model_params['output_layers'] == [-1] and m2d.run.lr_lineareval == pytest.approx(3e-5)
    dasheng = load_config(write(tmp_path, 'dasheng.yaml', EVAR_DASHENG)).model_params
    assert (dasheng['embed_dim'], dasheng['depth'], dasheng['num_heads']) == (1536, 40, 24)
    assert dasheng['weight_file'] == 'external/dasheng_12b.pt'
    hubert = load_config(write(tmp_path, 'hubert.yaml', EVAR_HUBERT))
    assert hubert.audio_repr == 'hf' and hubert.model_params['model_id'] == 'facebook/hubert-base-ls960'
    assert hubert.model_params['feature_extractor_id'] == 'facebook/wav2vec2-base-960h'  # as EVAR preprocesses
    w2v2 = load_config(write(tmp_path, 'w2v2.yaml', EVAR_W2V2_FEATURE), 'wav2vec_model=facebook/wav2vec2-base-960h')
    assert w2v2.model_params['output'] == 'conv_features'
    assert w2v2.model_params['model_id'] == 'facebook/wav2vec2-base-960h'  # an option on EVAR's key


def test_evar_keys_that_would_change_embeddings_are_refused(tmp_path):
    with pytest.raises(EvarError, match=r"cls_token: True is not supported.*False"):
        load_config(write(tmp_path, 'm2d.yaml', EVAR_M2D + 'cls_token: True\n'))
    with pytest.raises(EvarError, match=r"window: 'hamming' is not supported"):
        load_config(write(tmp_path, 'm2d.yaml', EVAR_M2D.replace('window: hanning', 'window: hamming')))
    msm_mae = EVAR_M2D.replace('ar_m2d.AR_M2D', 'ar_msm_mae.AR_MSM_MAE').replace('flat_features: False\n', '')
    assert load_config(write(tmp_path, 'msm.yaml', msm_mae)).model_params['norm_stats'] == [-7.1, 4.2]
    with pytest.raises(EvarError, match='mean/std must all be set'):  # EVAR would compute them from the task data
        load_config(write(tmp_path, 'msm.yaml', msm_mae.replace('mean: -7.1', 'mean:')))
    with pytest.raises(EvarError, match='norm_stats is .* but mean/std says'):
        load_config(write(tmp_path, 'msm.yaml', msm_mae + 'norm_stats: [0.0, 1.0]\n'))
    with pytest.raises(EvarError, match="model_name: 'mispeech/dasheng-2B' is not one evar can map"):
        load_config(write(tmp_path, 'd.yaml', EVAR_DASHENG.replace('dasheng-1.2B', 'dasheng-2B')))
    with pytest.raises(EvarError, match=r"unknown key\(s\) \['mean'\]"):  # only for models that read them
        load_config(write(tmp_path, 'mel.yaml', 'audio_repr: melspec\nmean: 1.0\n'))


def test_evar_names_without_a_wrapper_say_why_and_vggish_4k_maps(tmp_path):
    with pytest.raises(EvarError, match=r"'ar_trill.AR_TRILL' is an EVAR model that evar does not wrap: TRILL"):
        load_config(write(tmp_path, 'trill.yaml', 'audio_repr: ar_trill.AR_TRILL\n'))
    with pytest.raises(EvarError, match=r'does not wrap: .*use config/ast.yaml'):
        load_config(write(tmp_path, 'ast.yaml', 'audio_repr: ar_ast.AR_AST\n'))
    cfg = load_config(write(tmp_path, 'v4k.yaml', 'audio_repr: ar_vggish.AR_VGGish_4K\nfeature_d: 4096\n'))
    assert cfg.audio_repr == 'vggish' and cfg.model_params['output_layers'] == 0  # fc1, as EVAR's AR_VGGish_4K
