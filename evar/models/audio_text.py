"""The audio–text contract: what zero-shot classification (evar.modes.zeroshot) and audio↔text retrieval
(evar.modes.retrieval) ask of a model beyond `AudioRepr`.

A model takes one of two routes; a family implements the methods of its route on its `AudioRepr` subclass (no base
class to inherit: the modes look for the methods):

- **Joint embedding space** (CLAP-style: LAION-CLAP, MS-CLAP, WavCaps, M2D-CLAP).

      encode_text(texts: list[str]) -> torch.Tensor [len(texts), D], float, L2-normalised

  in the same D-dimensional joint space as the model's clip embedding `embed(wav, lengths) -> [B, D]` (pooled as
  the model declares, e.g. the mean of 10 s pieces). The modes L2-normalise clip embeddings again before taking
  cosine similarities, since a mean of unit vectors is shorter than one. `encode_text` runs the text tower under
  whatever grad mode the caller chose and returns a tensor on the model's device.

- **Caption likelihood** (generative audio-conditioned decoders: Whisper's decoder, captioners).

      caption_log_likelihood(wav [B, N], lengths [B], texts: list[str]) -> torch.Tensor [B, len(texts)]

  the length-normalised log-probability (natural log, mean over the text's tokens) of each text given each clip;
  waves as `AudioRepr.features` takes them (float32 at `sample_rate`, zero past each length). Higher is more
  likely. Only zero-shot classification uses this route; retrieval needs the joint space.

A model with `encode_text` is scored by cosine similarity even when it also has `caption_log_likelihood`.

A family whose config gives other embeddings for linear evaluation than its joint space (M2D-CLAP: EVAR's
`m2d_clap.yaml` gives backbone features to lineareval.py and the joint space to zeroshot.py, through separate
methods) declares `TEXT_MODE_OPTIONS` (a mapping of config key -> value) on its class; the text modes run the
config with them (`text_mode_options`), so the config with EVAR's name works in every script.
"""

from __future__ import annotations

from typing import Optional

from ..errors import EvarError

ROUTES = ('cosine', 'likelihood')


def has_text_encoder(model) -> bool:
    """Whether `model` embeds text into its audio embedding space (`encode_text`)."""
    return callable(getattr(model, 'encode_text', None))


def has_caption_likelihood(model) -> bool:
    """Whether `model` scores texts by their likelihood given the audio (`caption_log_likelihood`)."""
    return callable(getattr(model, 'caption_log_likelihood', None))


def text_route(model, config: str, need: Optional[str] = None) -> str:
    """How `model` scores texts against audio: 'cosine' (it has `encode_text`) or 'likelihood'
    (`caption_log_likelihood` only).

    Args:
        model: an `AudioRepr`.
        config: the model's YAML, named in the error.
        need: 'cosine' when the caller needs the joint space (retrieval); None accepts either route.

    Raises:
        EvarError: the model has neither method (or not the one `need` asks for).
    """
    if has_text_encoder(model):
        return 'cosine'
    if need is None and has_caption_likelihood(model):
        return 'likelihood'
    wanted = ('an audio–text model with encode_text (a joint audio-text embedding space, e.g. CLAP)' if need
              else 'an audio–text model: encode_text (CLAP-style joint space) or caption_log_likelihood (a decoder)')
    raise EvarError(f'{config}: {type(model).__name__} has no text side; this mode needs {wanted}. '
                    'See evar/models/audio_text.py for the contract.')


def text_mode_options(config_file, options: str) -> str:
    """The config options a text mode (zero-shot, retrieval) runs `config_file` with: the model class's
    `TEXT_MODE_OPTIONS` first (the user's `options` may override them), then `options`, then `crop=full` (whole
    clips, whatever the YAML or options say).

    Raises:
        EvarError: an unreadable YAML, a missing or unknown `audio_repr` (as `evar.config.load_config` would).
    """
    from pathlib import Path

    from ..config import read_model_yaml
    from . import model_class

    _, name = read_model_yaml(Path(config_file))
    declared = getattr(model_class(name), 'TEXT_MODE_OPTIONS', {})
    parts = [f'+{key}={value}' for key, value in declared.items()] + [options or '', 'crop=full']
    return ','.join(part for part in parts if part)
