"""Fine-tuning's optimisers, learning-rate schedule, parameter groups and LoRA adapters.

EVAR's recipe (its finetune.py): SGD, AdamW, LARS or LAMB on all the network's parameters, and timm's
`CosineLRScheduler(t_initial=epochs, lr_min=1e-7, warmup_t=warmup_epochs, warmup_lr_init=0)` stepped every
iteration. timm cannot be a dependency here (it pulls torchvision), so LARS and LAMB come from `pytorch_optimizer`
and the schedule is a `LambdaLR` with timm's formula. Beyond EVAR: parameter groups with no weight decay on biases
and norms and layer-wise learning-rate decay (BEiT/EAT), and LoRA adapters on attention projections (peft).

Typical use::

    groups = param_groups(model, weight_decay=1e-4, layer_decay=0.65)   # layer_decay only for transformer ARs
    optimizer = make_optimizer('adamw', groups, lr=1e-3)
    scheduler = cosine_schedule(optimizer, epochs=50, warmup_epochs=5, steps_per_epoch=len(loader))
    for ...: loss.backward(); optimizer.step(); optimizer.zero_grad(); scheduler.step()
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..errors import EvarError

OPTIMIZERS = ('sgd', 'adamw', 'lars', 'lamb')

# EVAR's weight decay for each optimiser. sgd/lars/adamw are the values EVAR passes; EVAR builds LAMB with only the
# learning rate, so it gets timm Lamb's default weight decay 0.01.
EVAR_WEIGHT_DECAY = {'sgd': 0.0, 'adamw': 1e-4, 'lars': 0.0, 'lamb': 0.01}

# A transformer block's parameters: `blocks.3.` (timm ViT: M2D, EAT, CED, Dasheng, ATST), `layers.3.` (BEATs,
# wav2vec 2.0's encoder), `layer.3.` (Hugging Face BERT-style `encoder.layer.3.`: AST). The name must start there or
# follow a dot, so a convolutional front end's `conv_layers.0.` is not a block. Nested names (Swin-like
# `layers.1.blocks.0.` in HTS-AT) take the first, outer index: there a "layer" is a stage.
_BLOCK = re.compile(r'(?:^|\.)(?:blocks|layers|layer)\.(\d+)\.')
# Parameters before the first block: patch/positional embeddings, class/mask tokens, a waveform model's convolutional
# feature extractor and its projection. Matched as substrings of the parameter name.
_EMBEDDING_KEYS = ('embed', '_token', 'feature_extractor', 'feature_projection')
# Tensors that, besides biases and 1-D parameters, get no weight decay: timm's ViT/BEiT `no_weight_decay()` set
# (positional embeddings; class, distillation and mask tokens, EAT's `extra_tokens`: any name with `_token`).
_NO_DECAY_KEYS = ('pos_embed', '_token')

# Attention projections that LoRA adapts: fused `qkv` (timm ViT), `q_proj`/`k_proj`/`v_proj` (BEATs, wav2vec 2.0,
# Whisper), `query`/`key`/`value` (Hugging Face BERT-style: AST). Matched as the last component of an nn.Linear's name.
LORA_TARGETS = ('qkv', 'q_proj', 'k_proj', 'v_proj', 'query', 'key', 'value')


def layer_id(name: str, num_layers: int, before_blocks: bool = False) -> int:
    """The depth of parameter `name` for layer-wise learning-rate decay, in 0 .. num_layers + 1.

    i + 1: block i (`blocks.i.`, `layers.i.`, `layer.i.`, e.g. `encoder.layer.i.`; the first, outer index when names
    nest). 0: what precedes the blocks: a name containing one of `embed`, `_token`, `feature_extractor`,
    `feature_projection` (patch/positional embeddings, class/mask tokens, a waveform front end), or any
    name when `before_blocks` says the parameter comes before the first block (`param_groups` passes that from the
    model's parameter order, which catches front ends such as CED's `init_bn`, Whisper's `conv1`, EAT's
    `local_encoder`). num_layers + 1: everything else, which in a transformer AR is what follows the blocks (final
    norm, pooling) and the task head. Block matches come first, so `blocks.2.pos_embed` is block 2. Names are matched
    as given; a head prefix is handled by `param_groups`.
    """
    found = _BLOCK.search(name)
    if found:
        return int(found.group(1)) + 1
    if before_blocks or any(key in name for key in _EMBEDDING_KEYS):
        return 0
    return num_layers + 1


def count_layers(model: nn.Module, head_prefix: str = 'head.') -> int:
    """The number of transformer blocks of `model`: 1 + the largest block index in its parameter names (all of them,
    frozen or not; names under `head_prefix` are left out), as `layer_id` reads them; 0 when it has none."""
    indices = [int(found.group(1)) for name, _ in model.named_parameters()
               if not name.startswith(head_prefix) and (found := _BLOCK.search(name))]
    return max(indices) + 1 if indices else 0


def _no_decay(name: str, param: torch.Tensor) -> bool:
    """True for the tensors that take no weight decay: biases, 1-D parameters (norm scales) and tokens/positional
    embeddings (timm's convention)."""
    return param.ndim <= 1 or name.endswith('.bias') or any(key in name for key in _NO_DECAY_KEYS)


def param_groups(model: nn.Module, weight_decay: float, layer_decay: Optional[float] = None,
                 head_prefix: str = 'head.') -> list[dict]:
    """Optimiser parameter groups of `model`'s trainable parameters (requires_grad), for `make_optimizer` or any
    torch optimiser.

    Biases, 1-D parameters (norms) and tokens/positional embeddings get weight decay 0, the others `weight_decay`
    (timm/BEiT convention). With `layer_decay` (e.g. 0.65), a parameter at depth `layer_id` (0 .. L + 1, L =
    `count_layers`; names starting with `head_prefix` at L + 1; parameters registered before the first block's at
    0, so the order of `model.named_parameters()` matters: a module registered after the blocks but run before them,
    as BEATs' encoder-level norms can be, gets L + 1) gets `lr_scale = layer_decay ** (L + 1 - layer_id)`:
    the head and the final norm train at the full rate, block i at layer_decay ** (L - i), the embeddings at
    layer_decay ** (L + 1). Without it every group has lr_scale 1.0.

    Returns a list of dicts with keys `params` (list of tensors), `param_names` (their names, for logging),
    `weight_decay` (float), `apply_decay` (bool: False for the no-decay tensors) and `lr_scale` (float); groups in
    order of first appearance, none empty. Raises EvarError when `layer_decay` is not in (0, 1] or the model has no
    transformer blocks to decay over, and when `weight_decay` is negative.
    """
    if weight_decay < 0:
        raise EvarError(f'weight_decay must be >= 0, got {weight_decay}')
    num_layers = count_layers(model, head_prefix)
    if layer_decay is not None:
        if not 0 < layer_decay <= 1:
            raise EvarError(f'layer_decay must be in (0, 1], got {layer_decay}')
        if num_layers == 0:
            raise EvarError(f'layer_decay needs a transformer AR, but {type(model).__name__} has no transformer blocks '
                            f'(no parameter named like blocks.N., layers.N. or layer.N.)')
    names = [name for name, _ in model.named_parameters()]
    first_block = next((i for i, name in enumerate(names) if _BLOCK.search(name) and not name.startswith(head_prefix)),
                       len(names))
    groups: dict[tuple, dict] = {}
    for position, (name, param) in enumerate(model.named_parameters()):
        if not param.requires_grad:
            continue
        depth = num_layers + 1 if name.startswith(head_prefix) else layer_id(name, num_layers, position < first_block)
        scale = 1.0 if layer_decay is None else layer_decay ** (num_layers + 1 - depth)
        decay = not _no_decay(name, param)
        group = groups.setdefault((scale, decay), {'params': [], 'param_names': [], 'weight_decay': weight_decay if decay
                                                   else 0.0, 'apply_decay': decay, 'lr_scale': scale})
        group['params'].append(param)
        group['param_names'].append(name)
    return list(groups.values())


def _optimizer_library():
    """The `pytorch_optimizer` module (LARS, LAMB); EvarError saying how to install it when it is missing."""
    try:
        import pytorch_optimizer
    except ImportError as e:
        raise EvarError("optimizers 'lars' and 'lamb' need the pytorch_optimizer package: pip install 'evar[finetune]'") \
            from e
    return pytorch_optimizer


def make_optimizer(name: str, groups: list, lr: float, weight_decay: Optional[float] = None) -> torch.optim.Optimizer:
    """EVAR's optimiser `name` (one of OPTIMIZERS) over `groups` (from `param_groups`, or plain dicts with `params`).

    Each group's lr is `lr * lr_scale` (lr_scale 1.0 when absent). Groups with `apply_decay` (default True) get
    `weight_decay`, or EVAR's value for the optimiser when None (EVAR_WEIGHT_DECAY: sgd 0, adamw 1e-4, lars 0,
    lamb 0.01), replacing the group's own; the others get 0. The input dicts are not modified.

    - sgd: torch SGD, momentum 0.9.
    - adamw: torch AdamW, betas (0.9, 0.95), eps 1e-8, amsgrad=True.
    - lars: timm's Lars, as EVAR builds it (momentum 0.9), adapts the learning rate by its trust ratio only when
      weight decay is non-zero; EVAR passes weight decay 0, so its `lars` runs plain SGD with momentum 0.9, and so
      does evar's at weight decay 0 (torch SGD, the same update), to keep EVAR's published settings meaning the same.
      With weight decay > 0: pytorch_optimizer.LARS, momentum 0.9, trust coefficient 0.001 (the layer-wise
      0.001 * |w| / |g| scaling of 2-D+ tensors).
    - lamb: pytorch_optimizer.Lamb as close to timm's Lamb (EVAR's) as it goes: betas (0.9, 0.999), eps 1e-6,
      weight decay added to the update (not decoupled), gradients clipped to global norm 1.0. It still differs from
      timm: no bias correction of the moments, and the trust ratio applies to every tensor (timm skips it on tensors
      without weight decay).

    Raises EvarError for an unknown name (listing OPTIMIZERS), lr <= 0, no parameters, or a missing
    pytorch_optimizer (lars, lamb).
    """
    if name not in OPTIMIZERS:
        raise EvarError(f'unknown optimizer {name!r}: expected one of {", ".join(OPTIMIZERS)}')
    if not lr > 0:
        raise EvarError(f'learning rate must be > 0, got {lr}')
    decay = EVAR_WEIGHT_DECAY[name] if weight_decay is None else weight_decay
    torch_groups = []
    for group in groups:
        group = dict(group)
        group['lr'] = lr * group.setdefault('lr_scale', 1.0)
        group['weight_decay'] = decay if group.get('apply_decay', True) else 0.0
        torch_groups.append(group)
    if not any(len(group['params']) for group in torch_groups):
        raise EvarError(f'optimizer {name!r} got no trainable parameters (is everything frozen?)')
    if name == 'sgd' or (name == 'lars' and decay == 0):
        return torch.optim.SGD(torch_groups, lr=lr, momentum=0.9)
    if name == 'adamw':
        return torch.optim.AdamW(torch_groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, amsgrad=True)
    library = _optimizer_library()
    if name == 'lars':
        return library.LARS(torch_groups, lr=lr, momentum=0.9, trust_coefficient=0.001)
    return library.Lamb(torch_groups, lr=lr, betas=(0.9, 0.999), eps=1e-6, weight_decouple=False, pre_norm=True,
                        max_grad_norm=1.0)


@dataclass
class WarmupCosine:
    """timm's CosineLRScheduler factor at iteration `step` (warmup_lr_init 0, warmup_prefix False, one cycle), as a
    multiple of the group's initial lr, for `LambdaLR`.

    With t = step / steps_per_epoch (fractional epochs): t < warmup_epochs: t / warmup_epochs; t < epochs:
    min_ratio + 0.5 (1 - min_ratio)(1 + cos(pi t / epochs)) (the cosine runs over t from 0, the warm-up included,
    as timm's default); after: min_ratio. `min_ratio` = lr_min / the group's unscaled lr. A dataclass, not a closure,
    so that LambdaLR's state_dict saves its fields.
    """

    epochs: float
    warmup_epochs: float
    steps_per_epoch: int
    min_ratio: float

    def __call__(self, step: int) -> float:
        """The factor at iteration `step` (0 before the first optimizer step)."""
        t = step / self.steps_per_epoch
        if t < self.warmup_epochs:
            return t / self.warmup_epochs
        if t >= self.epochs:
            return self.min_ratio
        return self.min_ratio + 0.5 * (1.0 - self.min_ratio) * (1.0 + math.cos(math.pi * t / self.epochs))


def cosine_schedule(optimizer: torch.optim.Optimizer, epochs: float, warmup_epochs: float, steps_per_epoch: int,
                    lr_min: float = 1e-7) -> torch.optim.lr_scheduler.LambdaLR:
    """EVAR's learning-rate schedule: timm's `CosineLRScheduler(t_initial=epochs, lr_min=lr_min,
    warmup_t=warmup_epochs, warmup_lr_init=0)` stepped per iteration with fractional epochs, as a `LambdaLR`.

    Call `scheduler.step()` once after each `optimizer.step()`; iteration k (0-based) then runs at t = k /
    steps_per_epoch epochs: a linear warm-up from 0 over `warmup_epochs`, then a cosine from the base lr at t = 0 to
    lr_min at t = epochs, lr_min after. (EVAR steps timm's scheduler with the finished iteration's t, so its
    iteration k runs at t = (k - 1) / steps_per_epoch and its first two at lr 0: one iteration behind this.)

    Each group's lr = its lr at construction (`make_optimizer`'s lr * lr_scale) * the factor, with the floor scaled
    alike: a group ends at lr_min * lr_scale, as timm's scheduler does with `lr_scale`. The constructor sets the
    groups' lr to the factor at t = 0 (0 with a warm-up). Resume: build the optimizer and this scheduler as for a
    fresh run, then load the optimizer's state dict (it restores the groups' lr) and the scheduler's (its step).
    Raises EvarError for epochs <= 0, warmup_epochs < 0, steps_per_epoch < 1, lr_min < 0 or a group lr <= 0.
    """
    if not epochs > 0:
        raise EvarError(f'epochs must be > 0, got {epochs}')
    if warmup_epochs < 0:
        raise EvarError(f'warmup_epochs must be >= 0, got {warmup_epochs}')
    if int(steps_per_epoch) != steps_per_epoch or steps_per_epoch < 1:
        raise EvarError(f'steps_per_epoch must be a positive integer, got {steps_per_epoch}')
    if lr_min < 0:
        raise EvarError(f'lr_min must be >= 0, got {lr_min}')
    factors = []
    for group in optimizer.param_groups:
        # On resume the optimizer may already hold 'initial_lr' from a scheduler; that is the base, not the lr now.
        base = group.get('initial_lr', group['lr'])
        if not base > 0:
            raise EvarError(f'cosine_schedule needs a positive lr in every parameter group, got {base}')
        min_ratio = lr_min * group.get('lr_scale', 1.0) / base
        factors.append(WarmupCosine(float(epochs), float(warmup_epochs), int(steps_per_epoch), min_ratio))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def add_lora(model: nn.Module, r: int, alpha: Optional[float] = None, dropout: float = 0.0) -> nn.Module:
    """LoRA adapters (peft) on `model`'s attention projections, every other parameter frozen; returns `model`,
    modified in place.

    Adapted: each nn.Linear whose name's last component is one of LORA_TARGETS (a fused `qkv`, or separate
    q/k/v projections). Each gets a rank-`r` update B A scaled by alpha / r (alpha defaults to r: scale 1), with
    A random and B zero, so the model's output is unchanged until training moves B; `dropout` applies to the
    adapter's input in training. Afterwards only the adapters' `lora_A`/`lora_B` weights require grad: unfreeze the
    task head (or anything else) after this call. Raises EvarError when r < 1, dropout is not in [0, 1), or the model
    has no such projection (naming the model's class).
    """
    if int(r) != r or r < 1:
        raise EvarError(f'LoRA rank r must be a positive integer, got {r}')
    if not 0 <= dropout < 1:
        raise EvarError(f'LoRA dropout must be in [0, 1), got {dropout}')
    targets = [name for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and name.rpartition('.')[2] in LORA_TARGETS]
    if not targets:
        raise EvarError(f'LoRA needs attention projections, but {type(model).__name__} has no nn.Linear named '
                        f'{", ".join(LORA_TARGETS)}')
    from peft import LoraConfig, inject_adapter_in_model

    # A plain holder as the root: peft treats a root with `.config.model_type` (evar's Hugging Face wrappers) as a
    # transformers model and then reads attributes that only a PreTrainedModel has. The holder's child is `model`
    # itself, so the adapters land in `model`. Full module names as targets: peft would otherwise also adapt
    # non-Linear modules with these names.
    holder = nn.Module()
    holder.ar = model
    config = LoraConfig(r=int(r), lora_alpha=float(r if alpha is None else alpha), lora_dropout=dropout,
                        target_modules=[f'ar.{name}' for name in targets], bias='none')
    inject_adapter_in_model(config, holder)
    for name, param in model.named_parameters():
        param.requires_grad_('lora_' in name)
    return model
