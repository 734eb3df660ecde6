"""Side-by-side parity check of evar against EVAR's own wrappers: the reference is `evar/ar_*.py` of
nttcslab/eval-audio-repr at a pinned commit (what EVAR's published numbers come from), not the models' official code
(benchmarks/parity_<family>.py check that). For each family, seeded random weights are saved in the official
checkpoint layout (made as the family's parity_<family>.py makes them), EVAR's wrapper is built from EVAR's own YAML
with that weight_file and run as EVAR's lineareval runs it (`precompute`, then `forward` on a [1, samples] batch per
clip), and evar's config of the same name embeds the same waves in one padded batch. Clips are real (../shared):
ESC-50 (5 s), a RAVDESS sentence (~3.5 s), a speech command (1 s) and a 20.5 s concatenation of them, longer than
every model's window, so chunking is exercised. Printed per family: the max and median over clips of the relative
clip-embedding difference max|ours - EVAR| / max|EVAR|.

EVAR's package is also called `evar`, so the two run in separate interpreters and exchange .npy files: this script
runs in evar's venv and calls itself with `--side ref` in a reference venv that has EVAR's dependencies (torch and
torchvision as a pair, timm, nnAudio, einops, easydict, pandas, pyyaml, soundfile; torchaudio for the families whose
front ends use it). Sources (exported as plain folders under --external): EVAR itself (--evar_ref), and
  m2d:    github.com/nttcslab/m2d as `m2d/` with its README's setup done (facebookresearch/mae efb2a80 files plus
          timm's layers/pos_embed.py, then `patch -p1 < patch_m2d.diff`)
  beats:  github.com/microsoft/unilm `beats/` as `unilm/beats/`
  atst_*: github.com/Audio-WestlakeU/audiossl (ec3a14d) as `audiossl/` (fairseq and the lightning module stubbed)
  vggish: github.com/tcvrick/audioset-vggish-tensorflow-to-pytorch (a9c6319) as `tcvrick_ns/external/tcvrick_vggish/`
  htsat:  github.com/RetroCirce/HTS-Audio-Transformer (2e29471) as `htsat/` (training utils stubbed, as parity_htsat)
  opera_ct: github.com/evelyn0414/OPERA (3622310) `src/` as `OPERA/src/` (pytorch_lightning, efficientnet_pytorch
          stubbed); beats_plus: unilm 768a3c8

    python benchmarks/parity_evar.py m2d m2d_32k m2d_flat beats atst_clip atst_frame atst_frame_patches byola2 \\
        cnn14 wav2vec2feature wav2vec2context wav2vec2logit hubert wavlm data2vec whisper \\
        vggish vggish_4k htsat beats_plus melspec linspec opera_ct \\
        --ref_python /tmp/venv_evarref/bin/python --evar_ref /tmp/evar_ref --external /tmp/ref

(byola2: EVAR imports `external.byol_a.v2`, so github.com/nttcslab/byol-a goes in <evar_ref>/external/byol_a.
cnn14: EVAR imports `evar.cnn14_decoupled`, which its README downloads: for_evar/cnn14_decoupled.py of
github.com/daisukelab/sound-clf-pytorch goes in <evar_ref>/evar/; the ref venv needs torchlibrosa. hf families: the
ref venv needs transformers; no hub access: the weights and processors are written locally.)
Seen on 2026-11-23 (EVAR 88ba772; reference venv torch 2.14.1 + torchvision 0.29.1, torchaudio 2.11.1, timm 1.0.31,
nnAudio 0.3.4; evar venv torch 2.13 CPU), max / median relative difference over the 4 clips:
    m2d 2.8e-07 / 2.2e-07 (EVAR's runtime takes the checkpoint's norm_stats, not its YAML's -7.1/4.2; so does evar)
    m2d_32k 3.1e-07 / 2.4e-07; m2d with flat_features 2.2e-07 / 1.7e-07
    beats 7.1e-07 / 5.6e-07; atst_clip 9.8e-07 / 8.6e-07 (both crop to the central 12 s)
    atst_frame 7.1e-07 / 3.7e-07 (scene_chunks: EVAR averages 10 s chunk means); atst_frame_patches (evar's frame
        mean) 2.4e-01 on the 20.5 s clip, 4.8e-07 median (clips up to 10 s are equal)
    byola2 4.4e-07 / 3.8e-07 (mean_max pooling = mean + max in both)
Seen on 2026-12-06 (same EVAR commit; reference venv rebuilt: torch 2.13.0+cpu, torchaudio 2.11.1 --no-deps with its
compiled libs moved out of torchaudio/lib (they do not load with torch 2.13; the pure-Python front ends used here
work), no torchvision (0.28.0 did not load its ops and broke transformers' imports), timm 1.0.31, nnAudio 0.3.4,
transformers 4.46.3, torchlibrosa 0.1.0 + librosa; evar venv torch 2.13 CPU, transformers 5.25):
    cnn14 2.5e-07 / 1.5e-07 (EVAR's evar/cnn14_decoupled.py from daisukelab/sound-clf-pytorch 85105ca, as its README
        says; evar's output_layers -1 with mean pooling = the official fc1 embedding)
    wav2vec2feature 8.5e-08 / 6.4e-08; wav2vec2context 3.6e-07 / 0; wav2vec2logit 4.9e-07 / 0
    hubert 0 / 0; wavlm 3.0e-07 / 1.9e-07 (both fed by wav2vec2-base-960h's processor: wave normalised per clip)
    data2vec 0 / 0 (base sizes); whisper 0 / 0 (tiny sizes, 128 mels; 30 s chunks, frames of real audio only)
    EVAR's embeddings of two different clips differ by 0.37 (whisper) and more, so these are not dead models.
    (hf families: random models built by transformers, saved with save_pretrained; both sides load the folder.)
Seen on 2026-12-06, group A (same reference venv and evar venv; --external /tmp/parity_a/ext):
    vggish 8.3e-07 / 4.7e-07; vggish_4k 3.8e-07 / 3.2e-07 (tcvrick's VGGish and vggish_input, which EVAR imports)
    htsat 2.0e-07 / 1.7e-07 (RetroCirce/HTS-Audio-Transformer 10 s chunks, infer_mode, averaged: so does evar)
    beats_plus 7.1e-07 / 5.6e-07 (EVAR's beats_plus.yaml is beats.yaml with the iter3+ AS2M file: same wrapper)
    melspec 2.8e-07 / 1.7e-07; linspec 1.8e-04 / 1.7e-05 (EVAR's training statistics given as norm_stats; linspec's
        max is the ESC-50 clip's 53,418 samples of digital silence: nnAudio's STFT, a float32 convolution, leaves
        |X| ~1e-9 there where torch.stft gives 0, and log(|X| + 1.2e-7) sees it; 2.5e-06 on the other 3 clips)
    melspec_unstandardised 1.6e+01 / 9.3; linspec_unstandardised 1.1e+01 / 8.1 (the YAMLs without norm_stats: EVAR's
        embedding x std + 2 mean, one affine map per task); melspec_htk 1.1 / 0.90 (HTK filters, evar's former
        melspec); linspec_power 1.4 / 0.96 (power spectrum, evar's former linspec); EVAR's between-clip scale 1.3, 0.76
    opera_ct 3.0e-07 / 2.3e-07 (EVAR's opera.yaml with +icbhi_sprs_mode, the clips repeated and cut to 16 s, each as
        a batch of two copies: EVAR's wrapper drops the batch axis of a batch of one and fails, fails on clips under
        8 s after trimming, and trims and min-max scales a batch as one array; evar does each clip alone)
    opera_ct_batch 3.7e-01 / 1.4e-01 (each clip batched with the next one instead, as EVAR's app batches clips: the
        batch's loudest clip sets every clip's dB reference and min-max range; per clip 2.8e-07 (the loudest),
        2.8e-01, 3.7e-01, 1.3e-04, where two clips' embeddings differ by 1.9e-01)
    EVAR has no config for clap_htsat_unfused: its LAION-CLAP wrapper is laionclap.yaml (see
        benchmarks/parity_laionclap.py).
AST (2026-12-06, same EVAR commit and reference venv; under --external /tmp/ast/ext: ast_site/ = pip --no-deps
--target of timm 0.4.5 and wget 3.2, ast_src/external/ast = github.com/YuanGongND/ast 31088be with EVAR's
external/ast_models.patch applied; stand-ins for torchvision and torch._six, see evar_ast_values.py), command
`python benchmarks/parity_evar.py ast ast_cls_dist ast_cls_dist_whole ast_cls_dist_whole_eps6 --external /tmp/ast/ext`.
EVAR's AR_AST builds the original ASTModel for the task's unit (here each clip's own length: no padding, no crop),
cuts the position embeddings from the middle of the 10.24 s grid (stretches them past it), standardises the Kaldi
fbank with the task's statistics as (x - mean) / (2 std) and returns ([CLS] + distillation) / 2 after the final
LayerNorm. Same random base-size weights on both sides (transformers folder converted as Hugging Face's script does):
    ast 3.5 / 3.0 (evar's ast.yaml as shipped: mean of the last block's patch tokens before the final LayerNorm,
        AudioSet's fixed statistics, 10.24 s pieces; per clip 2.5, 3.5, 3.5, 2.6; EVAR's between-clip scale 0.81)
    ast_cls_dist 4.8e-02 on the 20.5 s clip, 1.0e-04 median (`output: cls_dist` with EVAR's statistics as
        norm_stats: clips up to 10.24 s are one piece; the 20.5 s clip is two pieces averaged, EVAR stretches the
        position embeddings over it; in a run, `norm_stats: task` gathers EVAR's statistics from the training
        split: tests/test_ast_evar.py checks them against EVAR's precompute)
    ast_cls_dist_whole 1.2e-04 / 1.0e-04 (also chunk_sec 30: the 20.5 s clip in one piece, stretched as EVAR does)
    ast_cls_dist_whole_eps6 7.3e-07 / 5.7e-07 (the transformers folder's LayerNorm eps 1e-6, timm's, instead of
        1e-12, the ASTConfig default that Hugging Face's conversion of the AudioSet checkpoint keeps: the 1e-4
        above is that eps on this random model, whose token variances are small)
Group B (2026-12-06, same EVAR commit and reference venv, plus under --external /tmp/parity_b/ext: site/ =
pip --no-deps --target of torchopenl3 1.0.1, julius 0.2.8, six, msgpack-numpy 0.4.8, termcolor; evar_external/external/
coala (xavierfav/coala b791ad6 code files + EVAR's coala.patch) and esresnext (AndreyGuzhov/ESResNeXt-fbsp 7c1488a +
the sed lines of EVAR's Preparing-models.md); hf_transformers_custom_model_ced (jimbozhang, 1a9cd46) and
hf_transformers_custom_model_dasheng (jimbozhang, 31f5d6d), the sources of the hub's mispeech/ced-* and dasheng-*
remote code), command `python benchmarks/parity_evar.py openl3_env openl3_music coala coala_constant esresnext_fbsp
ced dasheng dasheng_official --external /tmp/parity_b/ext`:
    openl3_env 2.3e-07 / 1.9e-07, openl3_music 2.3e-07 / 1.9e-07 (mel256, 6144-d, the same random network under both
        file names; torchopenl3's own framing: 1 s windows every 0.1 s from -0.5 s, mean + max; its weights read from
        torch.hub's cache; EVAR's between-clip scale 1.6e-02)
    coala 4.7e-05 / 3.3e-05 (evar's STFT pads by reflection as librosa 0.7.2, the release's; EVAR's librosa 0.11 pads
        zeros); coala_constant (stft_pad_mode=constant) 4.5e-05 on the 20.5 s clip (no padding noise past 10 s:
        float32 FFT rounding in near-silent bins, magnified by the log), 9.3e-08 median. Both on EVAR's scaler file.
        This random COALA separates clips weakly: EVAR's embeddings of two clips differ by 9.9e-03.
    esresnext_fbsp 0 / 0 (bit-identical)
    ced 4.6e-01 on the 20.5 s clip, 2.7e-07 median (clips up to 10.12 s: 1.3e-07 to 3.8e-07). EVAR averages every
        token of the hub model's output, which pads the last 10.12 s window with zeros: 61 of that window's 63 columns
        are padding. EVAR's tokens of the columns holding audio average to evar's embedding within 1.1e-07.
    dasheng (mean_sigmoid) 1.1e-02 on the 20.5 s clip, 1.9e-07 median: EVAR's wrapper returns the hub model's `logits`,
        sigmoid(mean of the frames) with no output layer; the hub code zero-pads the last 10.08 s window and attends
        to the padding, the dasheng package (and evar) run it unpadded. dasheng_official (the plain mean) 3.2 / 2.9.
    EVAR wrappers evar does not have, so not compared: ar_owsm.py (OWSM v3.1 E-Branchformer through ESPnet's
    Speech2Text: espnet at a pinned git commit + espnet_model_zoo, and the 1B-parameter espnet/owsm_v3.1_ebf from the
    hub; the encoder is ESPnet code, not a transformers model), ar_qwen2.py (Qwen2.5-Omni-3B/7B's audio tower:
    transformers' Qwen2_5Omni classes, newer than EVAR's reference venv's 4.46, the whole 3B/7B checkpoint loaded with
    device_map='cuda', and a copy of the tower's forward that calls private transformers helpers), ar_trill.py
    (TRILL: published only as a TensorFlow-Hub SavedModel; needs tensorflow + tensorflow_hub, and evar is torch-only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from parity_common import relative

ROOT = Path(__file__).resolve().parents[1]
EVAR_COMMIT = '88ba7728896484b22e02187dedbb86fc61fc8177'
CLIPS = ['ESC-50/audio/*.flac', 'RAVDESS/Actor_01/*.flac', 'speech_commands_v2_test_a/yes/*.flac']
LONG_SEC = 20.5  # longer than every window: M2D 6.08 s, ATST 6 s, BEATs/EAT/CED 10 s, HTS-AT 10 s


@dataclass(frozen=True)
class Family:
    """One comparison: evar's config `config/<ours>.yaml` against EVAR's `config/<theirs>.yaml`.

    Attributes:
        ours: evar config stem; theirs: EVAR config stem.
        sample_rate: Hz of the waves both sides get.
        weights: name of the ref-side function that writes the random checkpoint (see REF_WEIGHTS) and returns its
            path, or '' for a model without weights (the spectrogram baselines); weight_arg: its argument.
        paths: folders under --external put on sys.path on the ref side (the official code EVAR imports).
        our_options / their_options: config overrides (`key=value`) besides weight_file.
        our_weight_key / their_weight_key: the config key that takes the written checkpoint's path on each side
            (hf: evar's `model_id`, EVAR's `wav2vec_model` or `pretrained_model`; '' on EVAR's side: its wrapper reads a
            fixed path, as AR_VGGish's external/pytorch_vggish.pth). String values of our_options may
            name `{work}`, the exchange folder (where the ref side also writes the stand-in of a hub folder).
        legacy_processor: EVAR's wav2vec2 / HuBERT / WavLM / data2vec wrappers index the processor's output
            (`preprocessed[0]`) as the [1, B, L] that transformers returned for a 2-d numpy batch when they were
            written; transformers 4.46 returns [B, L], so the wrappers fail (or drop the batch axis). The ref side
            gives Wav2Vec2Processor's input_values that leading axis back (see _legacy_transformers).
        shared_stats: the family normalises with statistics of the task's training data: EVAR's `precompute` takes
            them from the clips (cut to the shortest), and evar gets the same numbers as `norm_stats`, so the models
            are compared, not the two ways of gathering statistics (EVAR's include the zero padding of short clips).
        numpy_seed: numpy's global generator is seeded with it before each clip on the ref side (EVAR's COALA
            draws its padding noise from it; evar uses numpy RandomState(seed 0) per clip).
        repeat_to_sec: every clip is repeated and cut to exactly this long, on both sides (EVAR's OPERA-CT wrapper
            embeds only clips of 8 s or more after trimming, in batches of equal length, as its ICBHI / SPRS app
            makes them).
        ref_batch: EVAR's wrapper gets each clip in a batch of this many rows, and the clip's embedding is kept
            (EVAR's OPERA-CT squeezes a batch of one into a clip without a batch axis, and then fails).
        ref_mates: the other rows of that batch: 'copies' of the clip (which leave EVAR's batch-wide trimming and
            min-max scaling those of the clip alone), or 'next': the following clips of the list, as EVAR's app
            batches different clips (the figure is then how much a clip's embedding depends on its batch-mates).
        unit_per_clip: EVAR's wrapper is built anew for each clip with `unit_samples` = the clip's length, as for a
            task whose unit is that clip (EVAR's AR_AST sizes its network to the unit: it cannot take other lengths).
    """
    ours: str
    theirs: str
    sample_rate: int
    weights: str
    weight_arg: str = ''
    paths: tuple = ()
    our_options: dict = field(default_factory=dict)
    their_options: dict = field(default_factory=dict)
    shared_stats: bool = False
    our_weight_key: str = 'weight_file'
    their_weight_key: str = 'weight_file'
    legacy_processor: bool = False
    numpy_seed: int | None = None
    repeat_to_sec: float = 0.0
    ref_batch: int = 1
    ref_mates: str = 'copies'
    unit_per_clip: bool = False


# EVAR imports external.tcvrick_vggish (whose vggish_input imports `audioset` from the checkout's root)
VGGISH_PATHS = ('tcvrick_ns', 'tcvrick_ns/external/tcvrick_vggish')
HF_W2V2_FOLDER = '{work}/wav2vec2-base-960h'  # stand-in for the processor EVAR's HuBERT and WavLM wrappers load

COALA_SCALER = '{work}/external/coala_scaler_top_1000_plus_clip.pkl'  # EVAR's copy of the release's scaler
FAMILIES = {
    'm2d': Family('m2d', 'm2d', 16000, 'm2d_weights', 'm2d_vit_base-80x608p16x16-parity', ('m2d',)),
    'm2d_32k': Family('m2d_32k', 'm2d_32k', 32000, 'm2d_weights', 'm2d_vit_base-80x208p16x16p32k-parity', ('m2d',)),
    'm2d_flat': Family('m2d', 'm2d', 16000, 'm2d_weights', 'm2d_vit_base-80x608p16x16-parity', ('m2d',),
                       our_options={'flat_features': True}, their_options={'flat_features': True}),
    'beats': Family('beats', 'beats', 16000, 'beats_weights', '', ('unilm/beats',)),
    'atst_clip': Family('atst_clip', 'atst', 16000, 'atst_clip_weights', '', ('audiossl',)),
    'atst_frame': Family('atst_frame', 'atst_frame', 16000, 'atst_frame_weights', '', ('audiossl',)),
    'byola2': Family('byola2', 'byola2', 16000, 'byola2_weights', shared_stats=True),
    # evar's 40 ms frames mean-pooled, against EVAR's mean of chunk means: differs on the 20.5 s clip (expected).
    'atst_frame_patches': Family('atst_frame_patches', 'atst_frame', 16000, 'atst_frame_weights', '', ('audiossl',)),
    'cnn14': Family('cnn14', 'cnn14', 16000, 'cnn14_weights'),
    'wav2vec2context': Family('wav2vec2context', 'wav2vec2context', 16000, 'hf_weights', 'wav2vec2',
                              our_weight_key='model_id', their_weight_key='wav2vec_model', legacy_processor=True),
    'wav2vec2feature': Family('wav2vec2feature', 'wav2vec2feature', 16000, 'hf_weights', 'wav2vec2',
                              our_weight_key='model_id', their_weight_key='wav2vec_model', legacy_processor=True),
    'wav2vec2logit': Family('wav2vec2logit', 'wav2vec2logit', 16000, 'hf_weights', 'wav2vec2',
                            our_weight_key='model_id', their_weight_key='wav2vec_model', legacy_processor=True),
    'hubert': Family('hubert', 'hubert', 16000, 'hf_weights', 'hubert', our_weight_key='model_id',
                     their_weight_key='pretrained_model', legacy_processor=True,
                     our_options={'feature_extractor_id': HF_W2V2_FOLDER}),
    'wavlm': Family('wavlm', 'wavlm', 16000, 'hf_weights', 'wavlm', our_weight_key='model_id',
                    their_weight_key='pretrained_model', legacy_processor=True,
                    our_options={'feature_extractor_id': HF_W2V2_FOLDER}),
    'data2vec': Family('data2vec', 'data2vec', 16000, 'hf_weights', 'data2vec', our_weight_key='model_id',
                       their_weight_key='pretrained_model', legacy_processor=True, our_options={'feature_d': 768}),
    'whisper': Family('whisper', 'whisper', 16000, 'hf_weights', 'whisper', our_weight_key='model_id',
                      their_weight_key='pretrained_model', our_options={'feature_d': 384}),
    # group B (issue 15): OpenL3, COALA, ESResNeXt-fbsp, CED, Dasheng. The code EVAR imports goes under --external:
    # site/ (pip --no-deps --target: torchopenl3 1.0.1, julius, six, msgpack-numpy, termcolor), evar_external/external/
    # {coala, esresnext} (EVAR's Preparing-models.md steps), hf_transformers_custom_model_{ced,dasheng} (the hub code).
    # EVAR's OpenL3, COALA and ESResNeXt wrappers read their weights from fixed places (see the writers).
    'openl3_env': Family('openl3_env', 'openl3env', 48000, 'openl3_weights', 'env', ('site',),
                         their_weight_key=''),
    'openl3_music': Family('openl3_music', 'openl3mus', 48000, 'openl3_weights', 'music', ('site',),
                           their_weight_key=''),
    # COALA: both sides draw the padding noise from numpy seed 0; EVAR's STFT pads as librosa >= 0.10 (zeros), so
    # `coala` (evar's default: reflect, librosa 0.7.2 as the release) differs at the clip edges, `coala_constant` not.
    'coala': Family('coala', 'coala', 22000, 'coala_weights', '', ('site', 'evar_external'), numpy_seed=0,
                    their_weight_key='', our_options={'scaler_file': COALA_SCALER}),
    'coala_constant': Family('coala', 'coala', 22000, 'coala_weights', '', ('site', 'evar_external'), numpy_seed=0,
                             their_weight_key='', our_options={'scaler_file': COALA_SCALER, 'stft_pad_mode': 'constant'}),
    'esresnext_fbsp': Family('esresnext_fbsp', 'esresnextfbsp', 44100, 'esresnext_weights', '',
                             ('site', 'evar_external'), their_weight_key=''),
    'ced': Family('ced', 'ced', 16000, 'hub_audio_vit_weights', 'ced', ('site', 'hf_transformers_custom_model_ced'),
                  our_options={'weight_file': '{work}/ced_official.pt'}),
    'dasheng': Family('dasheng', 'dasheng', 16000, 'hub_audio_vit_weights', 'dasheng', ('site',),
                      their_weight_key='model_name', our_options={'weight_file': '{work}/dasheng_official.pt'}),
    'dasheng_official': Family('dasheng_official', 'dasheng', 16000, 'hub_audio_vit_weights', 'dasheng', ('site',),
                               their_weight_key='model_name',
                               our_options={'weight_file': '{work}/dasheng_official.pt'}),
    # group A (issue 15): VGGish, HTS-AT, BEATs iter3+
    'vggish': Family('vggish', 'vggish', 16000, 'vggish_weights', '', VGGISH_PATHS, their_weight_key=''),
    'vggish_4k': Family('vggish_4k', 'vggish_4k', 16000, 'vggish_weights', '', VGGISH_PATHS, their_weight_key=''),
    'htsat': Family('htsat', 'htsat', 32000, 'htsat_weights', '', ('htsat',)),
    'beats_plus': Family('beats_plus', 'beats_plus', 16000, 'beats_weights', '', ('unilm/beats',)),
    # EVAR's ar_spec.py baselines, standardised with EVAR's statistics (norm_stats); `_unstandardised`: the YAML as
    # it is (not standardised, an affine map of EVAR's); `_htk`: evar's former HTK-scale unnormalised filters.
    'melspec': Family('melspec', 'melspec', 16000, '', shared_stats=True),
    'linspec': Family('linspec', 'linspec', 16000, '', shared_stats=True),
    'melspec_unstandardised': Family('melspec', 'melspec', 16000, ''),
    'linspec_unstandardised': Family('linspec', 'linspec', 16000, ''),
    'melspec_htk': Family('melspec', 'melspec', 16000, '', shared_stats=True, our_options={'mel_scale': 'htk'}),
    'linspec_power': Family('linspec', 'linspec', 16000, '', shared_stats=True, our_options={'power': 2}),
    # EVAR's AR_OPERA_CT runs only in its ICBHI / SPRS app (icbhi_sprs_mode), on clips of 8 s or more
    'opera_ct': Family('opera_ct', 'opera', 16000, 'opera_weights', '', ('OPERA',), repeat_to_sec=16.0, ref_batch=2,
                       their_options={'+icbhi_sprs_mode': True}),
    # AST: EVAR's AR_AST runs the original AST code (timm 0.4.5 and github.com/YuanGongND/ast under --external, see
    # ast_weights); evar runs the same tensors converted to a transformers folder ({work}/hf_ast).
    'ast': Family('ast', 'ast', 16000, 'ast_weights', '', ('ast_site', 'ast_src'), unit_per_clip=True,
                  our_weight_key='model_id', our_options={'model_id': '{work}/hf_ast'}),
    'ast_cls_dist': Family('ast', 'ast', 16000, 'ast_weights', '', ('ast_site', 'ast_src'), unit_per_clip=True,
                           shared_stats=True, our_weight_key='model_id',
                           our_options={'model_id': '{work}/hf_ast', '+output': 'cls_dist'}),
    'ast_cls_dist_whole': Family('ast', 'ast', 16000, 'ast_weights', '', ('ast_site', 'ast_src'), unit_per_clip=True,
                                 shared_stats=True, our_weight_key='model_id',
                                 our_options={'model_id': '{work}/hf_ast', '+output': 'cls_dist',
                                              '+chunk_sec': 30}),
    'ast_cls_dist_whole_eps6': Family('ast', 'ast', 16000, 'ast_weights', 'timm_eps', ('ast_site', 'ast_src'),
                                      unit_per_clip=True, shared_stats=True, our_weight_key='model_id',
                                      our_options={'model_id': '{work}/hf_ast', '+output': 'cls_dist',
                                                   '+chunk_sec': 30}),
    'opera_ct_batch': Family('opera_ct', 'opera', 16000, 'opera_weights', '', ('OPERA',), repeat_to_sec=16.0,
                             ref_batch=2, ref_mates='next', their_options={'+icbhi_sprs_mode': True}),
}


# ---------------------------------------------------------------------------------------------------------------
# Reference side (runs in the reference venv; imports EVAR's `evar`, never ours)


def m2d_weights(work: Path, folder: str, external: Path) -> Path:
    """A random M2D training container under the official folder name, built by the official models_mae, with
    norm_stats unlike EVAR's YAML (-7.1, 4.2), so which statistics are used shows."""
    import torch
    from m2d import models_mae, runtime_audio

    from parity_m2d import perturb

    input_size, patch_size, _, model_name = runtime_audio.parse_sizes_by_name(folder)
    torch.manual_seed(0)
    model = models_mae.__dict__[model_name](img_size=input_size, patch_size=patch_size, decoder_depth=2,
                                            norm_stats=[-6.3, 4.6])
    perturb(model, 1)
    path = work / folder / 'checkpoint-300.pth'
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'model': model.state_dict(), 'epoch': 300}, path)
    return path


def beats_weights(work: Path, _: str, external: Path) -> Path:
    """The official BEATs container {'cfg', 'model'} of parity_beats (iter3-sized, every tensor perturbed)."""
    import torch

    from parity_beats import ITER3_CFG, official_model

    path = work / 'BEATs_parity.pt'
    torch.save({'cfg': ITER3_CFG, 'model': official_model(str(external / 'unilm' / 'beats')).state_dict()}, path)
    return path


def _audiossl_stubs() -> None:
    """Stand-ins for what audiossl imports but inference never calls (fairseq's mask helper) and for the lightning
    module that atstframe's `load_model` reads checkpoints with (pytorch_lightning is not installed): it builds
    FrameAST_base and loads the teacher encoder's tensors strictly, which is all `load_model` keeps of it. ATST-Clip's
    EVAR front end moves its MelSpectrogram to 'cuda' unconditionally; on a CPU-only machine that move is skipped."""
    import types

    import torch

    fairseq_utils = types.ModuleType('fairseq.data.data_utils')
    fairseq_utils.compute_mask_indices = None
    sys.modules.update({'fairseq': types.ModuleType('fairseq'), 'fairseq.data': types.ModuleType('fairseq.data'),
                        'fairseq.data.data_utils': fairseq_utils})

    class FrameATSTLightningModule:
        @classmethod
        def load_from_checkpoint(cls, path):
            from audiossl.methods.atstframe.audio_transformer import FrameAST_base

            encoder = FrameAST_base()
            state = torch.load(path, map_location='cpu')['state_dict']
            encoder.load_state_dict({k[len(ATST_FRAME_PREFIX):]: v for k, v in state.items()})
            return types.SimpleNamespace(model=types.SimpleNamespace(teacher=types.SimpleNamespace(encoder=encoder)))

    lightning = types.ModuleType('audiossl.methods.atstframe.model')
    lightning.FrameATSTLightningModule = FrameATSTLightningModule
    sys.modules['audiossl.methods.atstframe.model'] = lightning
    if not torch.cuda.is_available():
        to = torch.nn.Module.to
        torch.nn.Module.to = lambda self, *a, **k: self if a and str(a[0]).startswith('cuda') else to(self, *a, **k)


ATST_FRAME_PREFIX = 'model.teacher.encoder.'


def atst_clip_weights(work: Path, _: str, external: Path) -> Path:
    """A DINO-style {'teacher': ...} file of a random official AST_base (as parity_atst), every tensor perturbed."""
    import torch

    _audiossl_stubs()
    from audiossl.models.atst.audio_transformer import AST_base

    torch.manual_seed(0)
    model = AST_base()
    _perturb_all(model)
    path = work / 'atst_clip.ckpt'
    teacher = {f'module.backbone.{k}': v for k, v in model.state_dict().items()}
    torch.save({'teacher': teacher, 'student': {}, 'epoch': 1}, path)
    return path


def atst_frame_weights(work: Path, _: str, external: Path) -> Path:
    """A lightning-style file of a random official FrameAST_base (as parity_atst), every tensor perturbed."""
    import torch

    _audiossl_stubs()
    from audiossl.methods.atstframe.audio_transformer import FrameAST_base

    torch.manual_seed(0)
    model = FrameAST_base()
    _perturb_all(model)
    path = work / 'atst_frame.ckpt'
    torch.save({'state_dict': {f'{ATST_FRAME_PREFIX}{k}': v for k, v in model.state_dict().items()},
                'hyper_parameters': {}, 'pytorch-lightning_version': '1.6.0'}, path)
    return path


def _perturb_all(model) -> None:
    """Adds seeded noise to every tensor of `model` (LayerNorms and biases included), so none is trivial."""
    import torch

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)


def byola2_weights(work: Path, _: str, external: Path) -> Path:
    """The official v2 AudioNTT2022Encoder (as parity_byola2: seeded, BatchNorm statistics and affine terms random),
    its state dict saved as the released .pth files are."""
    import torch
    from external.byol_a.v2.byol_a2.models import AudioNTT2022Encoder

    from parity_common import randomise_batchnorm

    torch.manual_seed(0)
    model = AudioNTT2022Encoder(n_mels=64, d=3072)
    with torch.no_grad():
        randomise_batchnorm(model, torch.Generator().manual_seed(0))
    path = work / 'AudioNTT2022-BYOLA-64x96d2048-random.pth'
    torch.save(model.state_dict(), path)
    return path


def cnn14_weights(work: Path, _: str, external: Path) -> Path:
    """A random official `Cnn14_16k` container {'model': ...}: the torchlibrosa front-end tensors of EVAR's
    AudioFeatureExtractor, the network of EVAR's Cnn14_Decoupled (seeded; BatchNorm statistics and affine terms
    random, as parity_panns) and a random `fc_audioset` head, under the official key names."""
    import torch
    from evar.cnn14_decoupled import AudioFeatureExtractor, Cnn14_Decoupled

    from parity_common import randomise_batchnorm

    torch.manual_seed(0)
    body = Cnn14_Decoupled()
    with torch.no_grad():
        randomise_batchnorm(body, torch.Generator().manual_seed(0))
        body.bn0.running_mean.normal_(-20.0, 5.0)  # log-mel scale, so bn0 does not blow the input up
        body.bn0.running_var.uniform_(50.0, 150.0)
    head = torch.nn.Linear(2048, 527)
    state = {**AudioFeatureExtractor().state_dict(), **body.state_dict(),
             **{f'fc_audioset.{k}': v for k, v in head.state_dict().items()}}
    path = work / 'Cnn14_16k_parity.pth'
    torch.save({'model': state, 'iteration': 0}, path)
    return path


HF_VOCAB = ['<pad>', '<s>', '</s>', '<unk>', '|'] + list("ETAONIHSRDLUMWCFGYPBVK'XJQZ")  # 32, as wav2vec2-base-960h


def _w2v2_processor(folder: Path, attention_mask: bool) -> None:
    """Saves a Wav2Vec2Processor like wav2vec2-base-960h's (do_normalize, 16 kHz, padding 0; its 32-letter CTC
    vocabulary) in `folder`; data2vec-audio-*-960h's differs only by return_attention_mask=True."""
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'vocab.json').write_text(json.dumps({t: i for i, t in enumerate(HF_VOCAB)}))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(folder / 'vocab.json'))
    extractor = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                                      do_normalize=True, return_attention_mask=attention_mask)
    transformers.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(folder))


def hf_weights(work: Path, kind: str, external: Path) -> Path:
    """A save_pretrained folder of a seeded random transformers model, every tensor perturbed, with the preprocessor
    of the hub repository EVAR's config names: wav2vec2 (Wav2Vec2ForCTC, base size, 32 letters, as
    facebook/wav2vec2-base-960h), hubert / wavlm (base; EVAR's wrappers load the processor of
    facebook/wav2vec2-base-960h, written to HF_W2V2_FOLDER and redirected there), data2vec (Data2VecAudioModel, base
    size instead of EVAR's large, to keep the run short), whisper (WhisperModel, tiny sizes, 128 mel bins as
    large-v3)."""
    import torch
    import transformers

    torch.manual_seed(0)
    folder = work / f'hf_{kind}'
    _w2v2_processor(Path(HF_W2V2_FOLDER.format(work=work)), attention_mask=False)
    if kind == 'wav2vec2':
        model = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(vocab_size=len(HF_VOCAB)))
        _w2v2_processor(folder, attention_mask=False)
    elif kind == 'hubert':
        model = transformers.HubertModel(transformers.HubertConfig())
    elif kind == 'wavlm':
        model = transformers.WavLMModel(transformers.WavLMConfig())
    elif kind == 'data2vec':
        model = transformers.Data2VecAudioModel(transformers.Data2VecAudioConfig())
        _w2v2_processor(folder, attention_mask=True)
    elif kind == 'whisper':
        config = transformers.WhisperConfig(num_mel_bins=128, d_model=384, encoder_layers=4, decoder_layers=1,
                                            encoder_attention_heads=6, decoder_attention_heads=6,
                                            encoder_ffn_dim=1536, decoder_ffn_dim=1536)
        model = transformers.WhisperModel(config)
        folder.mkdir(parents=True, exist_ok=True)  # AutoProcessor wants a tokenizer too: 256 byte tokens, no merges
        byte_chars = transformers.models.gpt2.tokenization_gpt2.bytes_to_unicode().values()
        (folder / 'vocab.json').write_text(json.dumps({c: i for i, c in enumerate(byte_chars)}))
        (folder / 'merges.txt').write_text('#version: 0.2\n')
        tokenizer = transformers.WhisperTokenizer(str(folder / 'vocab.json'), str(folder / 'merges.txt'))
        transformers.WhisperProcessor(transformers.WhisperFeatureExtractor(feature_size=128),
                                      tokenizer).save_pretrained(str(folder))
    else:
        raise ValueError(kind)
    _perturb_all(model)
    model.save_pretrained(str(folder))
    return folder


def _legacy_transformers(work: Path, legacy_processor: bool) -> None:
    """Makes Wav2Vec2Processor.from_pretrained read the hub id EVAR's HuBERT / WavLM wrappers hard-code
    (facebook/wav2vec2-base-960h) from its stand-in folder in `work`; with `legacy_processor`, its call returns
    input_values [1, B, L] for a [B, L] numpy batch, as the transformers EVAR's wrappers were written for did (one
    leading axis added; the values, each row normalised on its own, are unchanged)."""
    import transformers

    processor = transformers.Wav2Vec2Processor
    redirect = {'facebook/wav2vec2-base-960h': HF_W2V2_FOLDER.format(work=work)}
    original_load = processor.from_pretrained.__func__
    processor.from_pretrained = classmethod(
        lambda cls, name, *a, **k: original_load(cls, redirect.get(name, name), *a, **k))
    if legacy_processor:
        original_call = processor.__call__

        def call(self, *args, **kwargs):
            out = original_call(self, *args, **kwargs)
            out['input_values'] = out['input_values'][None]
            return out
        processor.__call__ = call


def vggish_weights(work: Path, _: str, external: Path) -> Path:
    """tcvrick's VGGish (the module EVAR loads), seeded, every tensor perturbed, saved as EVAR's
    external/pytorch_vggish.pth: AR_VGGish reads that path relative to the working folder, so the reference side works
    in `work` from here on. vggish_input imports resampy, which 16 kHz input never calls: a stand-in."""
    import os
    import types

    import torch

    sys.modules.setdefault('resampy', types.ModuleType('resampy'))
    from external.tcvrick_vggish.vggish import VGGish

    torch.manual_seed(0)
    model = VGGish()
    _perturb_all(model)
    path = work / 'external' / 'pytorch_vggish.pth'
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    os.chdir(work)
    return path


def htsat_weights(work: Path, _: str, external: Path) -> Path:
    """The official HTS-AT lightning container {'state_dict': {'sed_model.' + key}} of parity_htsat's random model
    (every tensor but the front end's perturbed, bn0 statistics on the log-mel scale)."""
    import torch

    from parity_htsat import official_model

    model, _ = official_model(str(external / 'htsat'))
    path = work / 'HTSAT_parity.ckpt'
    torch.save({'state_dict': {f'sed_model.{k}': v for k, v in model.state_dict().items()}}, path)
    return path


def opera_weights(work: Path, _: str, external: Path) -> Path:
    """OPERA's lightning container {'state_dict': Cola(encoder='htsat')'s tensors} (encoder.encoder.htsat.*, and the
    projection head g / layer_norm / linear that EVAR loads and never uses), perturbed as parity_opera does.
    Stand-ins for what the OPERA modules import and inference never runs: pytorch_lightning's LightningModule (a
    Module whose save_hyperparameters does nothing), efficientnet_pytorch (EVAR's patch comments that import out),
    matplotlib and seaborn."""
    import types

    import torch

    class LightningModule(torch.nn.Module):
        def save_hyperparameters(self, *args, **kwargs):
            pass

    lightning = types.ModuleType('pytorch_lightning')
    lightning.LightningModule = LightningModule
    sys.modules.setdefault('pytorch_lightning', lightning)
    efficientnet = types.ModuleType('efficientnet_pytorch')
    efficientnet.EfficientNet = None
    sys.modules.setdefault('efficientnet_pytorch', efficientnet)
    for name in ('matplotlib', 'matplotlib.pyplot', 'seaborn'):
        sys.modules.setdefault(name, types.ModuleType(name))
    from src.model.models_cola import Cola

    torch.manual_seed(0)
    model = Cola(encoder='htsat')
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'extractor' not in name:
                p.add_(0.02 * torch.randn_like(p))
        htsat = model.encoder.encoder.htsat
        htsat.bn0.running_mean.uniform_(-0.2, 0.2)
        htsat.bn0.running_var.uniform_(0.05, 0.2)
    path = work / 'encoder-operaCT-parity.ckpt'
    torch.save({'state_dict': model.state_dict()}, path)
    return path


REF_WEIGHTS = {f.__name__: f for f in (m2d_weights, beats_weights, atst_clip_weights, atst_frame_weights,
                                        byola2_weights, cnn14_weights, hf_weights, vggish_weights, htsat_weights,
                                        opera_weights)}


class BatchOfCopies:
    """An EVAR AR that embeds each [1, samples] clip as the first row of a batch of `rows`: the others are copies
    of it, or with `clips` (the run's clips, all of one length) the clips that follow it in that list. `precompute`
    is the AR's; a call returns the first row ([1, D])."""

    def __init__(self, ar, rows: int, clips: list = None):
        self.ar, self.rows, self.clips = ar, rows, clips

    def precompute(self, device, loader):
        """The AR's own statistics pass."""
        self.ar.precompute(device, loader)

    def __call__(self, batch):
        """[1, samples] -> the AR's embedding of the first copy, [1, D]."""
        if self.clips is None:
            return self.ar(batch.repeat(self.rows, 1))[:1]
        i = next(k for k, c in enumerate(self.clips) if c.shape == batch[0].shape and bool((c == batch[0]).all()))
        mates = [self.clips[(i + k) % len(self.clips)] for k in range(1, self.rows)]
        import torch

        return self.ar(torch.stack([batch[0], *mates]))[:1]


def openl3_weights(work: Path, content_type: str, external: Path) -> Path:
    """torchopenl3's PytorchOpenl3 (mel256, 6144-d, as EVAR's openl3env / openl3mus), seeded, BatchNorm statistics
    and affine terms random (as parity_openl3), saved where torch.hub caches the URL torchopenl3 downloads from
    (TORCH_HOME = work/torch_home), so EVAR's AR_OpenL3 loads it offline. torchopenl3 imports resampy, which 48 kHz
    input never calls: a stand-in."""
    import os
    import types

    import torch

    sys.modules.setdefault('resampy', types.ModuleType('resampy'))
    os.environ['TORCH_HOME'] = str(work / 'torch_home')
    from torchopenl3.core import get_model_path
    from torchopenl3.models import PytorchOpenl3

    from parity_common import randomise_batchnorm_uniform

    torch.manual_seed(0)
    model = PytorchOpenl3(content_type=content_type, input_repr='mel256', embedding_size=6144)
    with torch.no_grad():
        randomise_batchnorm_uniform(model)
        model.batch_normalization_1.running_mean.fill_(-40.0)  # decibel inputs sit around -40
        model.batch_normalization_1.running_var.fill_(300.0)
    path = Path(torch.hub.get_dir()) / 'checkpoints' / get_model_path('mel256', content_type, 6144).split('/')[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def coala_weights(work: Path, _: str, external: Path) -> Path:
    """The official COALA AudioEncoder (models_t1000, seeded, BatchNorm statistics and affine terms random) saved
    where AR_COALA reads it, external/coala/saved_models/dual_ae_c/audio_encoder_epoch_200.pt under the working
    folder, next to what EVAR's patched encode.py opens at import (EVAR's coala_scaler_top_1000_plus_clip.pkl, the
    release's json/id2token_top_1000.json): the reference side works in `work` from here on."""
    import os
    import shutil

    import torch

    code = external / 'evar_external' / 'external' / 'coala'
    target = work / 'external' / 'coala'
    (target / 'json').mkdir(parents=True, exist_ok=True)
    shutil.copy(code / 'json' / 'id2token_top_1000.json', target / 'json')
    import evar  # EVAR's package: its external/ folder ships the scaler

    shutil.copy(Path(evar.__file__).parents[1] / 'external' / 'coala_scaler_top_1000_plus_clip.pkl', work / 'external')
    os.chdir(work)
    from external.coala.models_t1000 import AudioEncoder

    from parity_common import randomise_batchnorm

    torch.manual_seed(0)
    model = AudioEncoder()
    with torch.no_grad():
        randomise_batchnorm(model, torch.Generator().manual_seed(0))
    path = target / 'saved_models' / 'dual_ae_c' / 'audio_encoder_epoch_200.pt'
    path.parent.mkdir(parents=True)
    torch.save(model.state_dict(), path)
    return path


def esresnext_weights(work: Path, _: str, external: Path) -> Path:
    """The official ESResNeXtFBSP with EVAR's settings, seeded and randomised as parity_esresnext (BatchNorm terms,
    fbsp m / fb / fc), saved as external/ESResNeXtFBSP_AudioSet.pt under the working folder, where AR_ESResNeXtFBSP
    reads it: the reference side works in `work` from here on. The code imports torchvision only for pretrained
    ImageNet loaders and a transform base class that inference never calls; torchvision does not load beside this
    torch (its ops fail to register), so a stand-in holds those names."""
    import os
    import types

    import torch

    from parity_esresnext import randomise

    def unavailable(*args, **kwargs):
        raise RuntimeError('torchvision stand-in: not available in the parity run')

    vision = types.ModuleType('torchvision')
    vision.models = types.SimpleNamespace(resnet50=unavailable, resnext50_32x4d=unavailable)
    vision.transforms = types.SimpleNamespace(ToTensor=object)
    sys.modules['torchvision'] = vision
    from external.esresnext.model.esresnet_fbsp import ESResNeXtFBSP

    torch.manual_seed(0)
    model = ESResNeXtFBSP(n_fft=2048, hop_length=561, win_length=1654, window='blackmanharris', normalized=True,
                          onesided=True, spec_height=-1, spec_width=-1, num_classes=527, apply_attention=True)
    randomise(model, torch.Generator().manual_seed(0))
    path = work / 'external' / 'ESResNeXtFBSP_AudioSet.pt'
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    os.chdir(work)
    return path


def hub_audio_vit_weights(work: Path, kind: str, external: Path) -> Path:
    """The hub folders EVAR's CED and Dasheng wrappers load (mispeech/ced-base, mispeech/dasheng-base: no hub
    access here), made by their published code (jimbozhang/hf_transformers_custom_model_{ced,dasheng}, the source of
    the hub files): a seeded random CedForAudioClassification / DashengModel of base size, every tensor perturbed,
    saved with save_pretrained beside its feature extractor (Dasheng's as trust_remote_code files with an auto_map,
    as on the hub). The same tensors go to `{work}/<kind>_official.pt` under the official checkpoint names (the hub
    conversion scripts' renaming undone: `encoder.` dropped, CED's init_bn -> init_bn.1), which evar loads. EVAR's
    CED wrapper moves its input to 'cuda' unconditionally; on a CPU-only machine that move is skipped. CedConfig
    reads AudioSet's label names from the hub: stand-in names (they do not enter the embeddings)."""
    import torch

    torch.manual_seed(0)
    folder = work / f'hub_{kind}'
    if kind == 'ced':
        import ced_model.configuration_ced
        from ced_model.configuration_ced import CedConfig
        from ced_model.feature_extraction_ced import CedFeatureExtractor

        # CedConfig reads AudioSet's 527 label names from the hub (topel/ConvNeXt-Tiny-AT); names only: stand-ins
        labels = work / 'class_labels_indices.csv'
        labels.write_text('index,mid,display_name\n' + ''.join(f'{i},/m/{i},label {i}\n' for i in range(527)))
        ced_model.configuration_ced.cached_file = lambda *args, **kwargs: str(labels)
        from ced_model.modeling_ced import CedForAudioClassification

        model = CedForAudioClassification(CedConfig(name='ced-base'))
        extractor = CedFeatureExtractor()
        if not torch.cuda.is_available():
            to = torch.Tensor.to
            torch.Tensor.to = lambda self, *a, **k: self if a and str(a[0]).startswith('cuda') else to(self, *a, **k)
    else:
        from evar_dasheng_values import dasheng_hub_classes

        config, model_class, extractor_class = dasheng_hub_classes(external / 'hf_transformers_custom_model_dasheng',
                                                                   work)
        model, extractor = model_class(config('dasheng-base')), extractor_class()
    _perturb_all(model)
    with torch.no_grad():
        init_bn = model.encoder.init_bn
        bn = init_bn[1] if isinstance(init_bn, torch.nn.Sequential) else init_bn
        bn.running_mean.uniform_(-60, -10), bn.running_var.uniform_(100, 400)  # log-mel dB scale
    model.save_pretrained(str(folder))
    extractor.save_pretrained(str(folder))
    state = {(k[len('encoder.'):] if k.startswith('encoder.') else k): v for k, v in model.state_dict().items()}
    if kind == 'ced':
        state = {(f'init_bn.1.{k[len("init_bn."):]}' if k.startswith('init_bn.') else k): v
                 for k, v in state.items()}
    torch.save({'model': state}, work / f'{kind}_official.pt')
    return folder


def ast_weights(work: Path, kind: str, external: Path) -> Path:
    """A random AudioSet AST in the original checkpoint layout (a DataParallel state dict, `module.v.*` and
    `module.mlp_head.*`, 1024 frames, strides 10), built by github.com/YuanGongND/ast's ASTModel with EVAR's
    ast_models.patch applied (--external: ast_src/external/ast) on timm 0.4.5 (ast_site: pip --no-deps --target, with
    wget; stand-ins for torchvision and torch._six, see evar_ast_values.timm045_stand_ins), every tensor perturbed;
    saved as work/ast_audioset.pth for EVAR's weight_file. The same tensors go to a transformers
    ASTForAudioClassification folder {work}/hf_ast (evar_ast_values.to_transformers: the renaming of transformers'
    conversion script), with the config and feature extractor of Hugging Face's conversion of the AudioSet 10-10
    checkpoint (ASTConfig defaults: LayerNorm eps 1e-12 where timm's is 1e-6; mean -4.2677393, std 4.5689974);
    `kind` 'timm_eps': eps 1e-6 instead, the original's."""
    import torch
    import transformers

    from evar_ast_values import timm045_stand_ins, to_transformers

    timm045_stand_ins()
    from external.ast.src.models import ASTModel

    torch.manual_seed(0)
    model = ASTModel(label_dim=527, input_tdim=1024, imagenet_pretrain=False, audioset_pretrain=False, verbose=False)
    _perturb_all(model)
    path = work / 'ast_audioset.pth'
    torch.save({f'module.{k}': v for k, v in model.state_dict().items()}, path)
    config = transformers.ASTConfig(num_labels=527, **({'layer_norm_eps': 1e-6} if kind == 'timm_eps' else {}))
    classifier = transformers.ASTForAudioClassification(config)
    classifier.load_state_dict(to_transformers(model.state_dict()), strict=True)
    classifier.save_pretrained(str(work / 'hf_ast'))
    transformers.ASTFeatureExtractor(mean=-4.2677393, std=4.5689974, max_length=1024).save_pretrained(
        str(work / 'hf_ast'))
    return path


REF_WEIGHTS.update({f.__name__: f for f in (openl3_weights, coala_weights, esresnext_weights, hub_audio_vit_weights,
                                             ast_weights)})


def run_reference(family: Family, args) -> None:
    """Writes the random checkpoint and EVAR's embedding of each clip (`ref.npy`, [clips, D]) into args.work."""
    import numpy as np
    import torch

    work = Path(args.work)
    for p in reversed(family.paths):
        sys.path.insert(0, str(Path(args.external) / p))
    sys.path.insert(0, args.evar_ref)
    torch.set_num_threads(2)
    from evar.common import complete_cfg
    from evar.utils import load_yaml_config

    cfg = load_yaml_config(Path(args.evar_ref) / 'config' / f'{family.theirs}.yaml')  # before a chdir (vggish)
    weight_file = REF_WEIGHTS[family.weights](work, family.weight_arg, Path(args.external)) if family.weights else ''
    if family.weights == 'hf_weights':
        _legacy_transformers(work, family.legacy_processor)
    options = {**({family.their_weight_key: str(weight_file)} if weight_file and family.their_weight_key else {}),
               **family.their_options}
    cfg = complete_cfg(cfg, ','.join(f'{k}={v}' for k, v in options.items()), no_id=True)
    for key in ('mean', 'std'):  # as lineareval.make_cfg does
        cfg.setdefault(key, None)
    cfg.setdefault('return_filename', False)
    module_name, class_name = cfg.audio_repr.split('.')
    module = __import__(f'evar.{module_name}', fromlist=[class_name])
    waves = [torch.from_numpy(np.load(f)) for f in sorted(work.glob('clip*.npy'))]
    if family.unit_per_clip:
        cfg.unit_samples = len(waves[0])
    ar = getattr(module, class_name)(cfg).eval()
    if family.ref_batch > 1:
        ar = BatchOfCopies(ar, family.ref_batch, waves if family.ref_mates == 'next' else None)
    loader = torch.utils.data.DataLoader([w[:min(len(v) for v in waves)] for w in waves], batch_size=len(waves))
    ar.precompute('cpu', loader)
    with torch.inference_mode():
        embeddings = []
        for w in waves:
            if family.unit_per_clip and len(w) != cfg.unit_samples:  # EVAR's network for a task of this unit
                cfg.unit_samples = len(w)
                ar = getattr(module, class_name)(cfg).eval()
                ar.precompute('cpu', loader)
            if family.numpy_seed is not None:  # EVAR's COALA draws its padding noise from the global generator
                np.random.seed(family.numpy_seed)
            embeddings.append(ar(w[None])[0].float().numpy())
    np.save(work / 'ref.npy', np.stack(embeddings))
    if family.shared_stats:
        (work / 'norm_stats.json').write_text(json.dumps([float(v) for v in ar.norm_stats]))
    (work / 'weight_file.txt').write_text(str(weight_file))


# ---------------------------------------------------------------------------------------------------------------
# evar side


def load_clips(data: Path, sample_rate: int) -> list:
    """The real clips (first file of each CLIPS pattern) resampled to `sample_rate`, plus their LONG_SEC
    concatenation (repeated as needed); float32 numpy arrays."""
    import numpy as np
    import soundfile as sf
    import soxr

    clips = []
    for pattern in CLIPS:
        x, rate = sf.read(str(sorted(data.glob(pattern))[0]), dtype='float32', always_2d=True)
        clips.append(soxr.resample(x.mean(1), rate, sample_rate).astype(np.float32))
    long = np.concatenate(clips * 4)[:int(LONG_SEC * sample_rate)]
    return clips + [long]


def ours(family: Family, weight_file: str, clips: list, norm_stats=None, work: str = ''):
    """evar's clip embeddings [clips, D] from config/<family.ours>.yaml, all clips as one padded batch."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from evar.config import load_config
    from evar.models import create_model

    from parity_common import padded

    values = {**({family.our_weight_key: weight_file} if weight_file else {}),
              **{k: v.format(work=work) if isinstance(v, str) else v for k, v in family.our_options.items()}}
    if norm_stats is not None:
        values['+norm_stats'] = norm_stats  # '+': the YAML has no such key (statistics of the task by default)
    options = ','.join(f'{k}={v}' for k, v in values.items())
    config = load_config(ROOT / 'config' / f'{family.ours}.yaml', options)
    model = create_model(config.audio_repr, params=config.params).eval()
    wav, lengths = padded([torch.from_numpy(c) for c in clips])
    with torch.inference_mode():
        return model.embed(wav, lengths).float().numpy().astype(np.float64)


def compare(name: str, args) -> dict:
    """Runs both sides for family `name`; returns {'family', 'max', 'median', 'between_clips', 'per_clip'}."""
    import numpy as np
    import torch

    family = FAMILIES[name]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clips = load_clips(Path(args.data), family.sample_rate)
        if family.repeat_to_sec:
            n = int(family.repeat_to_sec * family.sample_rate)
            clips = [np.tile(c, -(-n // len(c)))[:n] for c in clips]
        for i, c in enumerate(clips):
            np.save(work / f'clip{i}.npy', c)
        subprocess.run([args.ref_python, __file__, name, '--side', 'ref', '--work', tmp, '--evar_ref', args.evar_ref,
                        '--external', args.external], check=True)
        ref = np.load(work / 'ref.npy').astype(np.float64)
        stats = json.loads((work / 'norm_stats.json').read_text()) if family.shared_stats else None
        mine = ours(family, (work / 'weight_file.txt').read_text(), clips, stats, tmp)
    assert mine.shape == ref.shape, f'{name}: evar {mine.shape} vs EVAR {ref.shape}'
    per_clip = [relative(torch.from_numpy(a), torch.from_numpy(b)) for a, b in zip(mine, ref)]
    # Scale of a real difference: EVAR's embeddings of clips 0 and 1 against each other (a dead model gives ~0).
    between = relative(torch.from_numpy(ref[0]), torch.from_numpy(ref[1]))
    return dict(family=name, max=max(per_clip), median=float(np.median(per_clip)), between_clips=between,
                per_clip=per_clip)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('families', nargs='+', choices=sorted(FAMILIES))
    parser.add_argument('--ref_python', default='/tmp/venv_evarref/bin/python', help="the reference venv's python")
    parser.add_argument('--evar_ref', default='/tmp/evar_ref', help=f'EVAR exported at {EVAR_COMMIT[:7]}')
    parser.add_argument('--external', default='/tmp/ref', help='folder of the official code EVAR imports')
    parser.add_argument('--data', default=str(ROOT.parent / 'shared' / 'data'))
    parser.add_argument('--side', default='evar', choices=['evar', 'ref'], help=argparse.SUPPRESS)
    parser.add_argument('--work', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == 'ref':
        run_reference(FAMILIES[args.families[0]], args)
        return
    print(f"Reference: EVAR's wrappers (nttcslab/eval-audio-repr {EVAR_COMMIT[:7]}), random weights, real clips "
          f'(+ a {LONG_SEC} s concatenation).')
    rows = []
    for name in args.families:
        row = compare(name, args)
        rows.append(row)
        print(json.dumps({k: (f'{v:.1e}' if isinstance(v, float) else v) for k, v in row.items() if k != 'per_clip'}),
              'per clip:', ' '.join(f'{v:.1e}' for v in row['per_clip']), flush=True)
    print('\n| family | max rel. diff | median |\n|---|---|---|')
    for row in rows:
        print(f"| {row['family']} | {row['max']:.1e} | {row['median']:.1e} |")


if __name__ == '__main__':
    main()
