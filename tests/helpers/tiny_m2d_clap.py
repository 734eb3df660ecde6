"""A tiny random M2D-CLAP in the publisher's layout, for the tests: M2D's training container (tests/helpers/
tiny_models.write_m2d) with the CLAP heads added under their official names (`audio_proj.0/2.*`, `text_proj.*`,
`logit_scale`), and a tiny BERT text tower with a WordPiece tokenizer saved with save_pretrained (the stand-in for
GTE-base, which is a BERT). Seeded; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

TEXT_WIDTH = 32  # the tiny text tower's hidden size; text_proj maps it to the audio width
FOLDER = 'm2d_clap_vit_base-80x208p16x16-tiny'


def write_text_tower(folder: Path, seed: int = 0) -> Path:
    """A seeded 1-layer BERT (hidden 32) with the character-level WordPiece tokenizer of
    `tiny_msclap.write_bert_folder`, saved into `folder` with save_pretrained; returns `folder`."""
    import transformers

    from helpers.tiny_msclap import write_bert_folder

    write_bert_folder(folder, hidden=TEXT_WIDTH, layers=1, heads=2, max_positions=128)
    torch.manual_seed(seed)
    transformers.BertModel(transformers.BertConfig.from_pretrained(folder)).eval().save_pretrained(folder)
    return folder


def clap_heads(dim: int, text_width: int = TEXT_WIDTH, seed: int = 1) -> dict:
    """Random `audio_proj` (Linear-ReLU-Linear, dim -> dim -> dim), `text_proj` (Linear text_width -> dim) and
    `logit_scale` tensors under the official names."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g) * 0.2

    return {'audio_proj.0.weight': rand(dim, dim), 'audio_proj.0.bias': rand(dim),
            'audio_proj.2.weight': rand(dim, dim), 'audio_proj.2.bias': rand(dim),
            'text_proj.weight': rand(dim, text_width), 'text_proj.bias': rand(dim),
            'logit_scale': torch.tensor(2.66)}


def semantic_heads(dim: int, depth: int = 2, seed: int = 2) -> dict:
    """A random 2025-style semantic-token audio_proj (`audio_proj.sem_token`, `sem_blocks.<i>.*` of one head and
    MLP ratio 1, `norm`) under the official names."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.2, offset=0.0):
        return torch.randn(*shape, generator=g) * scale + offset

    heads = {'audio_proj.sem_token': rand(1, 1, dim), 'audio_proj.norm.weight': rand(dim, offset=1.0),
             'audio_proj.norm.bias': rand(dim)}
    for i in range(depth):
        p = f'audio_proj.sem_blocks.{i}.'
        heads.update({p + 'norm1.weight': rand(dim, offset=1.0), p + 'norm1.bias': rand(dim),
                      p + 'attn.qkv.weight': rand(3 * dim, dim, scale=0.1), p + 'attn.qkv.bias': rand(3 * dim),
                      p + 'attn.proj.weight': rand(dim, dim, scale=0.1), p + 'attn.proj.bias': rand(dim),
                      p + 'norm2.weight': rand(dim, offset=1.0), p + 'norm2.bias': rand(dim),
                      p + 'mlp.fc1.weight': rand(dim, dim, scale=0.1), p + 'mlp.fc1.bias': rand(dim),
                      p + 'mlp.fc2.weight': rand(dim, dim, scale=0.1), p + 'mlp.fc2.bias': rand(dim)})
    return heads


def write_m2d_clap(root: Path, folder: str = FOLDER, heads: bool = True, edit=None) -> Path:
    """The tiny M2D-CLAP checkpoint ({'model': encoder + target/decoder keys + CLAP heads, 'args'}) under
    root/folder; `heads` False leaves the CLAP heads out (as an encoder-only file), `edit(state)` changes it."""
    from .tiny_models import M2D_SMALL, write_m2d  # here: tiny_models imports this module for its TINY table

    def add(state):
        if heads:
            state.update(clap_heads(M2D_SMALL['dim']))
        if edit:
            edit(state)

    return write_m2d(root, folder, **M2D_SMALL, edit=add)


def tiny_m2d_clap(folder: Path) -> dict:
    """Config values of the tiny model in the joint space (output audio_embeds, the local text tower)."""
    return {'weight_file': str(write_m2d_clap(folder)), 'output': 'audio_embeds',
            'text_model': str(write_text_tower(folder / 'text'))}
