"""The model registry: a YAML's `audio_repr` names a model here and `create_model` builds it.

Names map to `module:Class` and the module is imported only when that model is used, so a run never imports models
it does not need. A YAML may also name any importable class as `package.module:Class` (bring your own model).
EVAR's dotted names (`ar_byola.AR_BYOLA`) are accepted as aliases so EVAR configs load unchanged.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType

from ..errors import EvarError

MODELS = MappingProxyType({
    'melspec': 'evar.models.spec:MelSpec',
    'linspec': 'evar.models.spec:LinSpec',
    'byola': 'evar.models.byola:BYOLA',
    'byola2': 'evar.models.byola:BYOLA2',
    'm2d': 'evar.models.m2d:M2D',
    'msm_mae': 'evar.models.m2d:MSMMAE',
    'm2d_clap': 'evar.models.m2d_clap:M2DCLAP',
    'atst_clip': 'evar.models.atst:ATSTClip',
    'atst_frame': 'evar.models.atst:ATSTFrame',
    'beats': 'evar.models.beats:BEATs',
    'eat': 'evar.models.eat:EAT',
    'ced': 'evar.models.ced:CED',
    'dasheng': 'evar.models.dasheng:Dasheng',
    'htsat': 'evar.models.htsat:HTSAT',
    'cnn14': 'evar.models.panns:CNN14',
    'vggish': 'evar.models.vggish:VGGish',
    'openl3': 'evar.models.openl3:OpenL3',
    'esresnext_fbsp': 'evar.models.esresnext:ESResNeXtFBSP',
    'coala': 'evar.models.coala:COALA',
    'opera_ct': 'evar.models.opera:OperaCT',
    'hf': 'evar.models.hf:HFAudio',
    'laionclap': 'evar.models.laionclap:LaionCLAP',
    'msclap': 'evar.models.msclap:MSCLAP',
    'whisper_ct2': 'evar.models.whisper_ct2:WhisperCT2',
    'soundnet': 'evar.models.soundnet:SoundNet',
    'crepe': 'evar.models.crepe:Crepe',
    'wavcaps': 'evar.models.wavcaps:WavCaps',
    'hear': 'evar.models.adapters:HEARAdapter',
    'xares': 'evar.models.adapters:XARESAdapter',
})

EVAR_ALIASES = MappingProxyType({
    'ar_spec.AR_MelSpec': 'melspec',
    'ar_spec.AR_LinSpec': 'linspec',
    'ar_byola.AR_BYOLA': 'byola',
    'ar_byola2.AR_BYOLA2': 'byola2',
    'ar_m2d.AR_M2D': 'm2d',
    'ar_m2d.AR_M2D_CLAP': 'm2d_clap',
    'ar_m2d.AR_M2D_CLAP_PORTABLE': 'm2d_clap',
    'ar_msm_mae.AR_MSM_MAE': 'msm_mae',
    'ar_atst.AR_ATST': 'atst_clip',
    'ar_atst_frame.AR_ATST_Frame': 'atst_frame',
    'ar_beats.AR_BEATs': 'beats',
    'ar_eat.AR_EAT': 'eat',
    'ar_ced.AR_CED': 'ced',
    'ar_dasheng.AR_Dasheng': 'dasheng',
    'ar_htsat.AR_HTSAT': 'htsat',
    'ar_cnn14.AR_Cnn14': 'cnn14',
    'ar_vggish.AR_VGGish': 'vggish',
    'ar_vggish.AR_VGGish_4K': 'vggish',  # output_layers 0 (the first FC layer's 4096-d output): evar.config EVAR_IMPLIED
    'ar_openl3.AR_OpenL3': 'openl3',
    'ar_esresnext_fbsp.AR_ESResNeXtFBSP': 'esresnext_fbsp',
    'ar_coala.AR_COALA': 'coala',
    'ar_opera.AR_OPERA_CT': 'opera_ct',
    'ar_laionclap.AR_LAIONCLAP': 'laionclap',
    'ar_wavcaps.AR_WavCaps': 'wavcaps',
    'ar_msclap.AR_MSCLAP': 'msclap',
    # EVAR's transformers models are all `hf`; the keys their YAMLs imply (model_id, output, the feature extractor)
    # are set by evar.config.EVAR_KEYS and EVAR_IMPLIED.
    'ar_hubert.AR_Hubert': 'hf',
    'ar_wavlm.AR_WavLM': 'hf',
    'ar_data2vec.AR_Data2Vec': 'hf',
    'ar_whisper.AR_Whisper': 'hf',
    'ar_wav2vec2.AR_Wav2Vec2Context': 'hf',
    'ar_wav2vec2.AR_Wav2Vec2Feature': 'hf',
    'ar_wav2vec2.AR_Wav2Vec2Logit': 'hf',
})


# EVAR's model classes that evar does not wrap, and what to do instead (the error for their YAMLs says so).
EVAR_NOT_WRAPPED = MappingProxyType({
    'ar_ast.AR_AST': "EVAR runs the original AST code on ast_audioset.pth; evar runs the same AudioSet checkpoint "
                     "converted by Hugging Face with EVAR's embedding: use config/ast.yaml",
    'ar_byola.AR_BYOLAX': "BYOL-A's variant stacking every conv block's features (AudioNTT2020Task6X) is not "
                          'wrapped; byola gives the last conv frames (output_layers 0) or the embedding (1)',
    'ar_m2d.AR_M2D_Steering_Neurons': 'the M2D steering-neurons ablation of EVAR is not wrapped',
    'ar_owsm.AR_OWSM': 'OWSM needs ESPnet at a pinned commit and its E-Branchformer (not a transformers model)',
    'ar_qwen2.AR_Qwen2_5': "Qwen2.5-Omni (3B/7B, CUDA) re-runs its audio tower through transformers' private helpers",
    'ar_qwen2.AR_Qwen2_5_Token': "Qwen2.5-Omni (3B/7B, CUDA) re-runs its audio tower through transformers' private "
                                 'helpers',
    'ar_trill.AR_TRILL': 'TRILL is published only as a TensorFlow-Hub SavedModel; evar is torch-only',
})


def list_models() -> list:
    """The registered model names (the `audio_repr` values of `MODELS`), sorted."""
    return sorted(MODELS)


def resolve_name(name: str, source: str = 'config') -> str:
    """The registry name for `name` (an alias or `module:Class` is accepted); an error lists the known names."""
    if name in EVAR_NOT_WRAPPED:
        raise EvarError(f'{source}: audio_repr {name!r} is an EVAR model that evar does not wrap: '
                        f"{EVAR_NOT_WRAPPED[name]} (README, \"Comparing with EVAR's numbers\").")
    name = EVAR_ALIASES.get(name, name)
    if name in MODELS or ':' in name:
        return name
    raise EvarError(f'{source}: unknown audio_repr {name!r}. Registered models: {", ".join(list_models())}; '
                    'or name a class as package.module:Class.')


def model_class(name: str):
    """The AudioRepr class of a registry name or a `package.module:Class` (not an EVAR alias: `resolve_name` first),
    importing its module now.

    Raises:
        EvarError: the module cannot be imported (e.g. a missing optional dependency) or lacks the class.
    """
    target = MODELS.get(name, name)
    module_name, _, class_name = target.partition(':')
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise EvarError(f'Cannot import module {module_name!r} for audio_repr {name!r}: {e}') from e
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise EvarError(f'Module {module_name!r} has no class {class_name!r} (audio_repr {name!r}).') from None


def model_params_class(name: str):
    """The `Params` dataclass (the YAML keys it accepts) of the model `name` (a registry name, alias or
    `package.module:Class`).

    Raises:
        EvarError: unknown name, import failure, or a class without `Params`.
    """
    cls = model_class(resolve_name(name))
    params = getattr(cls, 'Params', None)
    if params is None:
        raise EvarError(f'audio_repr {name!r}: class {cls.__name__} has no Params dataclass declaring its config keys.')
    return params


def create_model(name: str, params=None, **cfg):
    """Builds the registered model `name`.

    Args:
        name: a registry name, an EVAR alias or `package.module:Class`.
        params: an instance of the class's `Params` (already checked, e.g. `ModelConfig.params`), or None.
        **cfg: config values checked against the class's `Params` when `params` is None.

    Raises:
        EvarError: unknown name, or a value of the wrong type.
    """
    from ..params import typed_dataclass

    cls = model_class(resolve_name(name))
    if params is None:
        params = typed_dataclass(cls.Params, cfg, source=f'audio_repr {name}')
    elif cfg:
        raise TypeError('create_model: give either params or keyword values, not both')
    return cls(params)
