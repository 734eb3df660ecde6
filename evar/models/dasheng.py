"""Dasheng (Dinkel et al., Interspeech 2024, "Scaling up masked audio encoder learning for general audio
classification"): the MAE-pretrained audio ViT encoder, written on the network shared with CED (evar/models/ced.py,
which describes the front end, the init BN and the blocks; parameter names are the official ones).

Dasheng's patches are 64 x 4 (all mel bins x 40 ms), so one token per 40 ms column, 768-d (base), 1280-d (0.6B)
or 1536-d (1.2B). The checkpoints on Zenodo are {'model': encoder state dict, 'config': ...}; the encoder's sizes come
from the YAML (embed_dim, depth, num_heads) and are checked by the strict load, except num_heads, which no tensor
shape reveals. Long audio is cut as the `dasheng` package (0.0.9) cuts it: the patch sequence into windows of 252
columns (1008 frames, 10.08 s), each run on its own, the last one as long as the audio left (here: padded and masked,
which is the same); the windows' frames are concatenated. (The older code on GitHub instead zero-pads the last
window and attends to the padding.) The pip package is not used because it imports torchaudio.

EVAR's AR_Dasheng (nttcslab/eval-audio-repr 88ba772) loads the hub export (mispeech/dasheng-*, remote code from
github.com/jimbozhang/hf_transformers_custom_model_dasheng) with no output layer and returns its `logits`: the sigmoid
of the frames' mean. config/dasheng*.yaml reproduce that with `temporal_pooling_type: mean_sigmoid` (EVAR's YAML
implies it too); config/dasheng_official.yaml keeps the plain mean. The hub code also zero-pads the last window and
attends to the padding (the older GitHub code's way), so clips longer than 10.08 s differ from EVAR's slightly:
benchmarks/parity_evar.py measured 1.9e-7 up to 10 s and 1.1e-2 on a 20.5 s clip.

Checked against the official code (PyPI dasheng 0.0.9 = github XiaoMi/dasheng's pretrained model, torch 2.9.1 +
torchaudio 2.9.1, random seeded dasheng_base-sized weights loaded strictly, 6 real clips of 0.5-25.8 s incl. 3 longer
than one window, ours as one padded batch): mel dB max abs diff 1.5e-05 dB, frame embeddings max relative diff
7.3e-07. Re-check with `PYTHONPATH=<folder with dasheng installed --no-deps> /work/evar_ref/venv/bin/python
benchmarks/parity_dasheng.py` (its docstring has the set-up).
"""

from __future__ import annotations

import torch

from .ced import AudioViTRepr

DASHENG_WEIGHTS_URL = ('https://zenodo.org/records/11511780 (dasheng_base.pt, dasheng_06b.pt, dasheng_12b.pt; '
                       'also the `dasheng` pip package downloads them from there)')


class Dasheng(AudioViTRepr):
    """Dasheng (Dinkel et al., Interspeech 2024; XiaoMi/dasheng): 64 x 4 patches, one frame per 40 ms patch column,
    windows of 1008 spectrogram frames (10.08 s); the YAML keys are `AudioViTParams`'. Frames [B, T, embed_dim]."""
    PATCH = (64, 4)
    TARGET_FRAMES = 1008
    FAMILY = 'Dasheng'
    WEIGHTS_URL = DASHENG_WEIGHTS_URL

    def window_counts(self, frames, n_windows):
        """Whole 4-frame columns of audio per clip and window ([B, W] each, output = keys): the last window of a clip
        is run as long as its audio (padding masked), a clip shorter than one patch counts one column."""
        width, pt = self.TARGET_FRAMES, self.PATCH[1]
        starts = torch.arange(n_windows, device=frames.device)[None] * width
        cols = torch.div((frames[:, None] - starts).clamp(0, width), pt, rounding_mode='floor')
        cols[:, 0] = cols[:, 0].clamp(min=1)  # a clip shorter than one patch is zero-padded to one
        return cols, cols  # padding is never attended to: the official last window is simply shorter
