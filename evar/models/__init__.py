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
    'hf': 'evar.models.hf:HFAudio',
    'whisper_ct2': 'evar.models.whisper_ct2:WhisperCT2',
    'soundnet': 'evar.models.soundnet:SoundNet',
    'crepe': 'evar.models.crepe:Crepe',
    'hear': 'evar.models.adapters:HEARAdapter',
    'xares': 'evar.models.adapters:XARESAdapter',
})

EVAR_ALIASES = MappingProxyType({
    'ar_spec.AR_MelSpec': 'melspec',
    'ar_spec.AR_LinSpec': 'linspec',
    'ar_byola.AR_BYOLA': 'byola',
})


def list_models() -> list:
    return sorted(MODELS)


def resolve_name(name: str, source: str = 'config') -> str:
    """The registry name for `name` (an alias or `module:Class` is accepted); an error lists the known names."""
    name = EVAR_ALIASES.get(name, name)
    if name in MODELS or ':' in name:
        return name
    raise EvarError(f'{source}: unknown audio_repr {name!r}. Registered models: {", ".join(list_models())}; '
                    'or name a class as package.module:Class.')


def model_class(name: str):
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
    cls = model_class(resolve_name(name))
    params = getattr(cls, 'Params', None)
    if params is None:
        raise EvarError(f'audio_repr {name!r}: class {cls.__name__} has no Params dataclass declaring its config keys.')
    return params


def create_model(name: str, **cfg):
    """Builds the registered model `name` from config values (checked against its Params)."""
    from ..config import typed_dataclass

    cls = model_class(resolve_name(name))
    return cls(typed_dataclass(cls.Params, cfg, source=f'audio_repr {name}'))
