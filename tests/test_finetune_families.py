"""Every registered family fine-tunes through the same code (issue 10): its tiny random model
(tests/helpers/tiny_models.py, the cases test_contract.py builds) inside a `TaskNetwork` trains a few SGD steps on a
fixed batch of 4 short waves with 3 classes, in train mode with SpecAugment on the normalised input where the family
takes it. The loss falls; every encoder parameter that trains gets a gradient in the first backward, except the
parameters listed in UNUSED with the reason the chosen output leaves them out; `--freeze_embed` semantics (the
patch embedding frozen) leave the patch embedding without gradient and unchanged. Also LoRA and layer-wise lr decay on
a tiny M2D. Families with nothing to train are listed in NOTHING_TO_TRAIN.
"""

import pytest
import torch

from evar.models import MODELS
from evar.modes.finetune import seed_epoch, soft_cross_entropy
from evar.training.augment import InputAugment
from evar.training.network import TaskNetwork, set_trainable
from evar.training.optim import add_lora, count_layers, make_optimizer, param_groups

import test_finetune_hooks
from helpers.tiny_models import HF_KINDS, TINY

# The fixture test_finetune_hooks.py defines: (name, the case's model in eval mode, norm stats set where needed).
tiny_model = test_finetune_hooks.tiny_model

LR = 0.02  # 0.05 overshoots on the tiny ATST-Frame (its loss rose in 5 steps); at 0.02 every family's falls
STEPS = 5
N_CLASSES = 3

# Families whose tiny model has no trainable parameter at all.
NOTHING_TO_TRAIN = {'melspec': 'a fixed log-mel front end, no parameters', 'linspec': 'a fixed STFT, no parameters'}

# Trainable parameters that get no gradient, by family: the output the tiny case selects does not use them. Found by
# running the test (an exact match is asserted, so a new unused parameter, or a fixed one, shows up here).
UNUSED = {
    'atst_clip': {'encoder.mask_embed': 'the mask token of pre-training; fine-tuning masks no patch'},
    'atst_frame': {'encoder.mask_embed': 'the mask token of pre-training; fine-tuning masks no patch'},
    'cnn14': dict.fromkeys(['body.fc1.weight', 'body.fc1.bias', 'body.fc_audioset.weight', 'body.fc_audioset.bias'],
                           'the tiny case takes conv block 6 frames (output_layers 0): fc1 and the AudioSet '
                           'classifier come after them'),
    'coala': {'body.fc_audio.0.weight': "output_layers 0 (EVAR's embedding) is the conv output; the aligned "
                                        'projection after it is unused'},
    'crepe': dict.fromkeys(['body.classifier.weight', 'body.classifier.bias'],
                           "output_layers 1 is the pitch classifier's input, so the classifier is unused"),
    'esresnext_fbsp': {'body.fc.weight': "output_layers 0 (EVAR's embedding) is the pooled features; the AudioSet "
                                         'classifier after it is unused',
                       'body.fc.bias': 'the unused AudioSet classifier',
                       'body.fbsp.bias': "the release's empty placeholder parameter (0 elements)"},
    'hf-ast': dict.fromkeys(['backbone.layernorm.weight', 'backbone.layernorm.bias'],
                            "hidden_states[-1] comes before ASTModel's final layernorm (only last_hidden_state has it)"),
    'hf-clap': dict.fromkeys(['backbone.logit_scale_a', 'backbone.logit_scale_t'],
                             'the contrastive temperatures scale audio-text similarities only'),
    # transformers 5 collects hidden_states from the layers' outputs, so with do_stable_layer_norm (large models)
    # hidden_states[-1] is the last layer's output before the encoder's final layer_norm.
    'hf-wav2vec2': dict.fromkeys(['backbone.encoder.layer_norm.weight', 'backbone.encoder.layer_norm.bias'],
                                 "hidden_states[-1] comes before the stable-layer-norm encoder's final layer_norm"),
    'msclap': dict.fromkeys(['cnn14.fc_audioset.weight', 'cnn14.fc_audioset.bias'],
                            "the tiny case is MS-CLAP 2022: CNN14's AudioSet classifier is not on the embedding's path"),
    'soundnet': dict.fromkeys([f'body.{layer}.{kind}' for layer in ('conv6', 'bn6', 'conv7', 'bn7')
                               for kind in ('weight', 'bias')] + [f'body.{head}.{kind}' for head in ('conv8', 'conv8_2')
                                                                  for kind in ('weight', 'bias')],
                              'output_layers conv5: the later blocks and the conv8 heads are unused'),
}


# Families whose patch_embedding() is a module (what --freeze_embed freezes); for the others it is None and
# --freeze_embed stops with an EvarError.
WITH_PATCH_EMBEDDING = {'atst_clip', 'atst_frame', 'beats', 'ced', 'cnn14', 'dasheng', 'eat', 'htsat', 'm2d', 'm2d_clap',
                        'msclap', 'msm_mae', 'opera_ct', 'wavcaps', 'whisper_ct2',
                        'laionclap', *(f'hf-{kind}' for kind in HF_KINDS)}

# Over ~3 s each on 2 cores (big real-size networks, Hugging Face model files, CTranslate2 reading).
SLOW = {'beats', 'coala', 'htsat', 'msclap', 'openl3', 'opera_ct', 'vggish', 'whisper_ct2', 'hf-ast',
        'hf-clap', 'hf-data2vec', 'hf-wavlm'}


def _case(name: str):
    marks = [pytest.mark.slow] if name in SLOW else []
    return pytest.param(name, marks=marks, id=name)


TRAINABLE = [_case(name) for name in sorted(TINY) if name not in NOTHING_TO_TRAIN]


def fixed_batch(sample_rate: int) -> tuple:
    """(waves [4, sr] float32 (1 s of noise at 0.1), lengths [4] with padding on two clips, one-hot targets [4, 3])."""
    generator = torch.Generator().manual_seed(1234)
    wav = torch.randn(4, sample_rate, generator=generator) * 0.1
    lengths = torch.tensor([sample_rate, sample_rate, sample_rate * 3 // 4, sample_rate // 2])
    targets = torch.eye(N_CLASSES)[[0, 1, 2, 0]]
    return wav, lengths, targets


def task_network(ar) -> TaskNetwork:
    """`ar` with SpecAugment set where it takes it, inside a new head, in train mode (seeded head init)."""
    if ar.augment_point == 'spectrogram':
        ar.input_augment = InputAugment(4, 4, False)
    torch.manual_seed(0)
    return TaskNetwork(ar, N_CLASSES).train()


def train(network: TaskNetwork, steps: int = STEPS, layer_decay=None) -> tuple:
    """`steps` SGD steps (momentum 0.9, as fine-tuning's default) on the fixed batch.

    Returns (loss of step 0, the same loss after training, {encoder parameter name: its gradient after the first
    backward, None when it got none}). Both losses are taken with the generators seeded alike (`seed_epoch`, as
    fine-tuning seeds each epoch), so SpecAugment, dropout and the models' own NumPy draws (transformers' time masks
    and LayerDrop) are the same: the comparison sees the training, not the augmentation's noise.
    """
    wav, lengths, targets = fixed_batch(network.ar.sample_rate)
    optimizer = make_optimizer('sgd', param_groups(network, weight_decay=0.0, layer_decay=layer_decay), LR)
    first_grads = {}
    for step in range(steps):
        seed_epoch(0, step)
        loss = soft_cross_entropy(network(wav, lengths), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if step == 0:
            first = float(loss.detach())
            first_grads = {name: None if p.grad is None else p.grad.clone()
                           for name, p in network.ar.named_parameters() if p.requires_grad}
        optimizer.step()
    seed_epoch(0, 0)
    with torch.no_grad():
        last = float(soft_cross_entropy(network(wav, lengths), targets))
    return first, last, first_grads


@pytest.mark.parametrize('tiny_model', [_case('hf-data2vec')], indirect=True)
def test_training_is_repeatable_when_the_model_draws_from_numpy(tiny_model):
    """data2vec-audio masks time steps and drops layers with NumPy's global generator in training mode; seeded per
    epoch, two trainings from the same weights give the same losses (they differed run to run before)."""
    _, ar = tiny_model
    start = {k: v.clone() for k, v in ar.state_dict().items()}
    first = train(task_network(ar))[:2]
    ar.load_state_dict(start)
    assert train(task_network(ar))[:2] == first


def test_every_family_is_classified():
    assert {case.audio_repr for case in TINY.values()} == set(MODELS)
    assert set(NOTHING_TO_TRAIN) | set(UNUSED) | SLOW <= set(TINY)


@pytest.mark.parametrize('name', sorted(NOTHING_TO_TRAIN))
def test_nothing_to_train(name, tmp_path):
    case = TINY[name]
    from evar.models import create_model

    ar = create_model(case.audio_repr, **case.write(tmp_path))
    assert not any(p.requires_grad for p in ar.parameters()), NOTHING_TO_TRAIN[name]


@pytest.mark.parametrize('tiny_model', TRAINABLE, indirect=True)
def test_family_fine_tunes(tiny_model):
    name, ar = tiny_model
    assert (ar.patch_embedding() is not None) == (name in WITH_PATCH_EMBEDDING), name
    network = task_network(ar)
    first, last, grads = train(network)
    assert last < first, f'{name}: loss {first:.5f} -> {last:.5f}'
    assert grads, f'{name}: no trainable encoder parameter'
    no_gradient = {n for n, g in grads.items() if g is None or not bool(g.abs().sum() > 0)}
    assert no_gradient == set(UNUSED.get(name, {})), f'{name}: parameters without a gradient: {sorted(no_gradient)}'
    assert all(bool(torch.isfinite(g).all()) for g in grads.values() if g is not None), name


@pytest.mark.parametrize('tiny_model', sorted(WITH_PATCH_EMBEDDING & set(TINY)), indirect=True)
def test_frozen_patch_embedding_gets_no_gradient(tiny_model):
    name, ar = tiny_model
    embedding = ar.patch_embedding()
    set_trainable(embedding, False)  # what build_network does for --freeze_embed
    frozen = {id(p) for p in embedding.parameters()}
    assert frozen, name
    before = {n: p.detach().clone() for n, p in ar.named_parameters() if id(p) in frozen}
    others = {n: p.detach().clone() for n, p in ar.named_parameters() if id(p) not in frozen and p.requires_grad}
    network = task_network(ar)
    train(network, steps=2)
    after = dict(ar.named_parameters())
    for n, value in before.items():
        assert after[n].grad is None, f'{name}: frozen {n} got a gradient'
        assert torch.equal(after[n].detach(), value), f'{name}: frozen {n} changed'
    assert any(not torch.equal(after[n].detach(), value) for n, value in others.items()), f'{name}: nothing trained'


@pytest.mark.parametrize('tiny_model', ['m2d'], indirect=True)
def test_lora_trains_only_adapters_and_head(tiny_model):
    _, ar = tiny_model
    add_lora(ar, 4)
    network = task_network(ar)
    trainable = [n for n, p in network.named_parameters() if p.requires_grad]
    assert trainable and all('lora_' in n or n.startswith('head.') for n in trainable), trainable
    assert any('lora_B' in n for n in trainable)
    base = {n: p.detach().clone() for n, p in network.named_parameters() if not p.requires_grad}
    first, last, grads = train(network)
    assert last < first, (first, last)
    assert all(g is not None for n, g in grads.items() if 'lora_B' in n)  # B starts at zero: A gets none at step 0
    assert all(torch.equal(p.detach(), base[n]) for n, p in network.named_parameters() if n in base)


@pytest.mark.parametrize('tiny_model', ['m2d'], indirect=True)
def test_layer_decay_scales_fall_toward_the_embedding(tiny_model):
    _, ar = tiny_model
    network = task_network(ar)
    decay = 0.65
    depth = count_layers(network)
    assert depth >= 2
    groups = param_groups(network, weight_decay=0.0, layer_decay=decay)
    scale = {name: g['lr_scale'] for g in groups for name in g['param_names']}
    assert all(scale[n] == 1.0 for n in scale if n.startswith('head.'))
    for i in range(depth):
        block = [s for n, s in scale.items() if f'blocks.{i}.' in n]
        assert block and block == pytest.approx([decay ** (depth - i)] * len(block)), (i, block)
    embedding = [s for n, s in scale.items() if 'patch_embed' in n]
    assert embedding and embedding == pytest.approx([decay ** (depth + 1)] * len(embedding))
    assert min(scale.values()) == pytest.approx(decay ** (depth + 1))
    optimizer = make_optimizer('sgd', groups, LR)
    assert sorted({g['lr'] for g in optimizer.param_groups}) == pytest.approx([LR * decay ** k for k in
                                                                               range(depth + 1, -1, -1)])
    first, last, _ = train(network, layer_decay=decay)
    assert last < first, (first, last)
