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


def test_existing_key_needs_plus_to_be_added():
    with pytest.raises(EvarError, match=r'\+num_workers=2'):
        load_config(ROOT / 'config/melspec.yaml', 'num_workers=2')


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
