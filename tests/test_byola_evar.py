"""BYOL-A (v1) gives EVAR's embeddings: config/byola_d512.yaml with the real d512 weights against reference values
from EVAR's own wrapper (`ar_byola.AR_BYOLA` of nttcslab/eval-audio-repr 88ba772, nnAudio 0.3.4's log-mel, torch
2.13.0 CPU) on four real Speech Commands clips, and the official byol-a front end kept as `mel_scale: htk`.

The reference values were printed by (2026-12-05; EVAR exported to /tmp/evar_ref with the byol-a code at
external/byol_a, its venv /tmp/venv_evarref_byola: torch==2.13.0, nnAudio, easydict, pandas, pyyaml, soundfile):

    python benchmarks/parity_evar_byola.py --ref_python /tmp/venv_evarref_byola/bin/python --evar_ref /tmp/evar_ref \\
        --files speech_commands_v2_test_a/yes/0cb74144_nohash_0.flac speech_commands_v2_test_a/stop/022cd682_nohash_0.flac \\
        speech_commands_v2_test_a/_silence_/1037.flac speech_commands_v2_test_a/_unknown_/backward_0cb74144_nohash_2.flac \\
        --norm_stats -9.5 4.7 --print_values 29,31,51,59,65,345,385,455

(the same run measured evar against EVAR at 2.1e-6 relative L2 on these clips).
"""

import numpy as np
import pytest
import torch

from evar.config import load_config
from evar.errors import EvarError
from evar.models import create_model

from helpers import BYOLA_D512, ROOT, SHARED, evar_reference_gaps, needs_byola, needs_shared

NORM_STATS = [-9.5, 4.7]  # fixed on both sides, so the values test the front end and the network only
INDEX = [29, 31, 51, 59, 65, 345, 385, 455]  # components non-zero on every clip and varying between them
# clip -> (L2 norm of EVAR's 512-d embedding, EVAR's components at INDEX)
EVAR_REFERENCE = {
    'yes/0cb74144_nohash_0.flac': (228.27802507717837, [
        10.186014175415039, 23.89307403564453, 4.431710720062256, 1.7906482219696045, 6.770479202270508,
        3.0250487327575684, 11.160696029663086, 3.5301148891448975]),
    'stop/022cd682_nohash_0.flac': (232.68142417498555, [
        2.4874966144561768, 8.090727806091309, 17.024471282958984, 1.9987032413482666, 1.4866714477539062,
        5.573279857635498, 1.167222023010254, 3.2433180809020996]),
    '_silence_/1037.flac': (191.52279539601136, [
        3.055549144744873, 2.3868675231933594, 2.2476091384887695, 1.7981412410736084, 1.3180866241455078,
        14.822548866271973, 3.461632251739502, 1.103119134902954]),
    '_unknown_/backward_0cb74144_nohash_2.flac': (230.28693477333255, [
        14.925743103027344, 9.270604133605957, 5.628844738006592, 6.97458028793335, 8.6146821975708,
        1.2685966491699219, 18.82813835144043, 11.586068153381348]),
}
# evar and EVAR differ by float32 rounding only (2e-6 measured; other CPUs' kernels round differently, by the same
# order), and the HTK front end moves these clips' embeddings by 52-83 % (L2, same statistics): 1e-3 tells the two
# apart on any CPU.
RTOL = 1e-3


def embeddings(config: str) -> np.ndarray:
    """[4, 512] float64 embeddings of the reference clips (each exactly 1 s) by config/<config>.yaml with the real
    d512 weights and NORM_STATS."""
    import soundfile as sf

    waves = []
    for name in EVAR_REFERENCE:
        wave, rate = sf.read(SHARED / 'data' / 'speech_commands_v2_test_a' / name, dtype='float32')
        assert rate == 16000 and len(wave) == 16000, name  # EVAR embedded the file as it is: no padding to compare
        waves.append(torch.from_numpy(wave))
    cfg = load_config(ROOT / 'config' / f'{config}.yaml', f'weight_file={BYOLA_D512},+norm_stats={NORM_STATS}')
    model = create_model(cfg.audio_repr, params=cfg.params).eval()
    with torch.inference_mode():
        return model.embed(torch.stack(waves), torch.full((len(waves),), 16000)).double().numpy()


@needs_shared
@needs_byola
@pytest.mark.parametrize('config', ['byola_d512', 'byola', 'byola_d1024', 'byola_d2048'])
def test_evar_named_configs_give_evars_embeddings(config):
    """Each of EVAR's config names, given the d512 weights (its width is read from them), reproduces EVAR's values."""
    norm_gap, component_gap = evar_reference_gaps(embeddings(config), EVAR_REFERENCE.values(), INDEX)
    assert norm_gap < RTOL and component_gap < RTOL, (norm_gap, component_gap)


@needs_shared
@needs_byola
def test_official_front_end_is_kept_and_differs_from_evars():
    """config/byola_official.yaml (HTK filters, as the official byol-a code) is another front end: far from EVAR's
    values, so the comparison above can tell them apart."""
    assert load_config(ROOT / 'config' / 'byola_official.yaml').params.mel_scale == 'htk'
    norm_gap, component_gap = evar_reference_gaps(embeddings('byola_official'), EVAR_REFERENCE.values(), INDEX)
    assert component_gap > 0.02, component_gap  # measured 0.097; with EVAR's front end 2.4e-7


def test_mel_scale_is_checked_before_the_weights_are_read(tmp_path):
    """A mistyped mel_scale names the key and both valid values, even when the weight file is also missing."""
    with pytest.raises(EvarError, match=r"mel_scale 'HTK' .*'slaney'.*'htk'"):
        create_model('byola', weight_file=str(tmp_path / 'missing.pth'), mel_scale='HTK')
