"""AST's `output: cls_dist` gives EVAR's embeddings: audio_repr hf with ([CLS] + distillation) / 2 of each clip's
unpadded input against reference values from EVAR's own wrapper (`ar_ast.AR_AST` of nttcslab/eval-audio-repr 88ba772,
which runs the original github.com/YuanGongND/ast code with EVAR's ast_models.patch on timm 0.4.5) on three real clips
(1 s, 3.6 s, 5 s: position embeddings cut from the middle of the 10.24 s grid) and a 12 s concatenation (stretched),
with a small seeded AST (DeiT-base width, DEPTH blocks) that both sides build from `seeded_state`; the checks of the
option, and `norm_stats: task` (EVAR's training-split statistics); the default patch-token mean is not EVAR's
embedding.

The reference values were printed by (2026-12-06; EVAR exported to /tmp/evar_ref, its venv /tmp/venv_evarref: see
benchmarks/parity_evar.py; torch 2.13.0 CPU; YuanGongND/ast 31088be + EVAR's patch under <ast_src>/external/ast,
timm 0.4.5 and wget 3.2 in <ast_site>), with FILES the first three keys of EVAR_REFERENCE:

    PYTHONPATH=<ast_site>:<ast_src> /tmp/venv_evarref/bin/python benchmarks/evar_ast_values.py \\
        --evar_ref /tmp/evar_ref --norm_stats -6.5 4.0 --index 0,100,200,300,400,500,600,700 --files $FILES --long 12

(benchmarks/parity_evar.py ast_cls_dist_whole_eps6 measured evar against EVAR on the base-size model.)
"""

import runpy

import numpy as np
import pytest
import torch

from evar.config import load_config
from evar.errors import EvarError
from evar.models import create_model

from helpers import ROOT, SHARED, evar_reference_gaps, needs_shared

NORM_STATS = [-6.5, 4.0]  # fixed on both sides (EVAR's precompute would take the task's)
INDEX = [0, 100, 200, 300, 400, 500, 600, 700]
LONG_SEC = 12.0
# clip -> (L2 norm of EVAR's 768-d embedding, EVAR's components at INDEX)
EVAR_REFERENCE = {
    'speech_commands_v2_test_a/yes/0cb74144_nohash_0.flac': (20.916328724279907, [
        0.7704249620437622, -0.1370430439710617, 0.13908004760742188, 0.5113912224769592, -0.11833474040031433,
        0.5715341567993164, 0.321727454662323, -0.2703282833099365]),
    'RAVDESS/Actor_01/03-01-01-01-01-01-01.flac': (26.97082567539216, [
        -0.5977907180786133, -0.05430001765489578, -0.8006678223609924, 0.6754673719406128, -0.2868874669075012,
        1.0657683610916138, 0.5815742611885071, -0.4063086211681366]),
    'ESC-50/audio/2-103426-A-3.flac': (20.362810268260016, [
        0.4696492552757263, 0.15546207129955292, 0.4086856544017792, 0.2522389888763428, -0.2874755859375,
        0.41965252161026, 0.12751145660877228, -0.0369546115398407]),
    'long 12 s': (21.056120524839613, [
        0.5120632648468018, 0.13229401409626007, 0.12292557954788208, 0.5448058843612671, -0.27486276626586914,
        0.39393067359924316, 0.5566089153289795, -0.04965457320213318]),
}
# evar and EVAR differ by float32 rounding; components differ between clips by 0.1 to 1.4 and the norms by 3 %:
# 1e-3 of the norm tells them apart on any CPU.
TOL = 1e-3


def values_script() -> dict:
    """The globals of benchmarks/evar_ast_values.py (`seeded_state`, `original_shapes`, `to_transformers`, DEPTH,
    NORM_EPS; nothing of EVAR or of the original AST code is imported)."""
    return runpy.run_path(str(ROOT / 'benchmarks' / 'evar_ast_values.py'))


@pytest.fixture(scope='module')
def small_ast(tmp_path_factory):
    """The seeded small AST of the reference run as a hub-style transformers folder (config.json, model.safetensors
    under the names of Hugging Face's conversion, which transformers maps to its own on loading; LayerNorm eps as
    timm's), with the AudioSet feature extractor; returns the folder."""
    transformers = pytest.importorskip('transformers')
    from safetensors.torch import save_file

    script = values_script()
    state = script['to_transformers'](script['seeded_state'](script['original_shapes']()))
    config = transformers.ASTConfig(num_hidden_layers=script['DEPTH'], layer_norm_eps=script['NORM_EPS'],
                                    num_labels=527)
    config.architectures = ['ASTForAudioClassification']
    folder = tmp_path_factory.mktemp('ast') / 'ast_small'
    config.save_pretrained(str(folder))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / 'model.safetensors'), {'format': 'pt'})
    transformers.ASTFeatureExtractor(mean=-4.2677393, std=4.5689974, max_length=1024).save_pretrained(str(folder))
    return folder


def reference_waves() -> list:
    """The reference clips (16 kHz mono) and their concatenation repeated and cut to LONG_SEC (as the script does)."""
    import soundfile as sf

    waves = [sf.read(str(SHARED / 'data' / name), dtype='float32')[0] for name in list(EVAR_REFERENCE)[:3]]
    n = int(LONG_SEC * 16000)
    joined = np.concatenate(waves)
    return [torch.from_numpy(w) for w in waves + [np.tile(joined, -(-n // len(joined)))[:n]]]


def build(folder, options: str = '', config: str = 'ast'):
    """config/<config>.yaml with the small AST folder and `options`, in eval mode."""
    cfg = load_config(ROOT / 'config' / f'{config}.yaml', f'model_id={folder}' + (f',{options}' if options else ''))
    return create_model(cfg.audio_repr, cfg.params).eval()


def embeddings(model, waves: list) -> np.ndarray:
    """[clips, D] float64 clip embeddings, all clips as one zero-padded batch."""
    lengths = torch.tensor([len(w) for w in waves])
    with torch.inference_mode():
        return model.embed(torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), lengths).double().numpy()


@needs_shared
@pytest.mark.slow  # ~6 s alone: a 768-d AST on four clips up to 12 s
def test_cls_dist_gives_evars_embeddings(small_ast):
    model = build(small_ast, f'norm_stats={NORM_STATS},+chunk_sec=30')  # config/ast.yaml is cls_dist
    assert model.embedding_dim == 768 and model.frame_hop_sec == 30.0  # one embedding per (whole-clip) piece
    ours = embeddings(model, reference_waves())
    norm_gap, component_gap = evar_reference_gaps(ours, EVAR_REFERENCE.values(), INDEX)
    assert norm_gap <= TOL and component_gap <= TOL, (norm_gap, component_gap)


@needs_shared
def test_patch_token_mean_default_is_not_evars_embedding(small_ast):
    """config/ast_patch_mean.yaml (mean of the last block's patch tokens of real audio, AudioSet statistics) gives
    another embedding: the difference is a documented design choice, not rounding."""
    waves = reference_waves()[:1]
    ours = embeddings(build(small_ast, config='ast_patch_mean'), waves)[0]
    norm, values = EVAR_REFERENCE['speech_commands_v2_test_a/yes/0cb74144_nohash_0.flac']
    assert np.abs(ours[INDEX] - values).max() > 0.1 * norm / np.sqrt(len(ours))


@pytest.mark.parametrize('options, words', [
    ('+output=cls_dist,output_layers=[3]', 'output_layers -1'),
    ('+norm_stats=[-4.0,0.0]', 'std > 0'),
    ('+norm_stats=dataset', 'std > 0'),
])
def test_cls_dist_and_norm_stats_are_checked(small_ast, options, words):
    with pytest.raises(EvarError, match=words):
        build(small_ast, options)


@needs_shared
def test_task_norm_stats_are_evars_and_standardise_the_input(small_ast):
    """norm_stats 'task': the training split's fbank statistics through `stat_sums`, equal to what EVAR's
    AR_AST.precompute printed for the first second of parity_evar.py's clips (ESC-50 2-103426-A-3, RAVDESS
    03-01-01-01-01-01-01, the first 'yes', the ESC-50 clip again: `Done _calculate_stats stats=(-7.1703, 6.6606)`),
    then used as fixed norm_stats would be; before they are set, embedding is an error."""
    from evar.models.base import stats_from_sums

    model = build(small_ast, "+output=cls_dist,+norm_stats=task")
    assert model.needs_norm_stats and model.norm_mean is None
    waves = reference_waves()
    second = [waves[i][:16000] for i in (2, 1, 0, 2)]
    with pytest.raises(EvarError, match='not set'):
        embeddings(model, second[:1])
    mean, std = stats_from_sums(model.stat_sums(torch.stack(second), torch.full((4,), 16000)))
    assert (mean, std) == pytest.approx((-7.1703, 6.6606), abs=1e-4)
    model.set_norm_stats(mean, std)
    fixed = build(small_ast, f'+output=cls_dist,+norm_stats=[{mean!r},{std!r}]')
    np.testing.assert_allclose(embeddings(model, second[1:3]), embeddings(fixed, second[1:3]), rtol=0, atol=1e-6)


def test_task_statistics_enter_the_cache_scope():
    """Embeddings that depend on the training split must be cached per fold: the scope is decided from the params
    before the model is built (AST's norm_stats 'task' is per config, not per class)."""
    from evar.models import model_class

    def uses(name, options=''):
        cfg = load_config(ROOT / 'config' / f'{name}.yaml', options)
        return model_class(cfg.audio_repr).uses_task_stats(cfg.params)

    assert uses('ast') and not uses('ast_patch_mean') and not uses('ast', 'norm_stats=[-4.0,4.0]')
    assert uses('melspec') and not uses('melspec', '+norm_stats=[0.0,1.0]') and uses('byola_d512')
    assert not uses('m2d') and not uses('wav2vec2context')
