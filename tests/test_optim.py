import math
import sys

import pytest
import torch
from torch import nn

from evar.errors import EvarError
from evar.training.optim import (OPTIMIZERS, add_lora, cosine_schedule, count_layers, layer_id, make_optimizer,
                                 param_groups)


class Block(nn.Module):
    def __init__(self, dim, fused):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        if fused:
            self.qkv = nn.Linear(dim, 3 * dim)
        else:
            self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.fused, self.dim = fused, dim

    def forward(self, x):
        h = self.norm1(x)
        q, k, v = self.qkv(h).chunk(3, -1) if self.fused else (self.q_proj(h), self.k_proj(h), self.v_proj(h))
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.dim), -1)
        x = x + self.proj(attn @ v)
        return x + self.mlp(x)


class TinyViT(nn.Module):
    """ViT-like names: patch_embed, cls_token, pos_embed, blocks.N., norm, head."""

    def __init__(self, depth=3, dim=8, fused=True, classes=3):
        super().__init__()
        self.patch_embed = nn.Linear(4, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 6, dim))
        self.blocks = nn.ModuleList([Block(dim, fused) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):  # x: (B, 5, 4)
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def group_of(groups, name):
    return next(g for g in groups if name in g['param_names'])


def test_layer_id_names():
    assert layer_id('patch_embed.weight', 12) == 0
    assert layer_id('cls_token', 12) == 0
    assert layer_id('encoder.embeddings.position_embeddings', 12) == 0
    assert layer_id('blocks.0.attn.qkv.weight', 12) == 1
    assert layer_id('encoder.layer.11.attention.query.weight', 12) == 12
    assert layer_id('encoder.layers.4.fc1.weight', 12) == 5
    assert layer_id('feature_extractor.conv_layers.0.conv.weight', 12) == 0  # conv_layers is not a block
    assert layer_id('norm.weight', 12) == 13
    assert layer_id('fc_norm.bias', 12) == 13


def test_groups_no_decay_on_bias_norm_tokens():
    model = TinyViT()
    groups = param_groups(model, weight_decay=0.05)
    for name in ('blocks.0.qkv.bias', 'blocks.1.norm1.weight', 'norm.weight', 'head.bias', 'cls_token', 'pos_embed'):
        assert group_of(groups, name)['weight_decay'] == 0.0, name
        assert group_of(groups, name)['apply_decay'] is False
    for name in ('blocks.0.qkv.weight', 'patch_embed.weight', 'head.weight', 'blocks.2.mlp.0.weight'):
        assert group_of(groups, name)['weight_decay'] == 0.05, name
    assert all(g['lr_scale'] == 1.0 for g in groups)
    # Every trainable parameter exactly once.
    listed = [n for g in groups for n in g['param_names']]
    assert sorted(listed) == sorted(n for n, _ in model.named_parameters())


def test_groups_skip_frozen():
    model = TinyViT()
    model.patch_embed.requires_grad_(False)
    listed = [n for g in param_groups(model, 0.0) for n in g['param_names']]
    assert 'patch_embed.weight' not in listed and 'head.weight' in listed


def test_layer_decay_scales():
    model = TinyViT(depth=3)
    assert count_layers(model) == 3
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.5)
    expected = {'patch_embed.weight': 0.5 ** 4, 'cls_token': 0.5 ** 4, 'pos_embed': 0.5 ** 4,
                'blocks.0.qkv.weight': 0.5 ** 3, 'blocks.1.norm1.bias': 0.5 ** 2, 'blocks.2.mlp.2.weight': 0.5,
                'norm.weight': 1.0, 'head.weight': 1.0, 'head.bias': 1.0}
    for name, scale in expected.items():
        assert group_of(groups, name)['lr_scale'] == scale, name
    # One group per (depth, decay) pair present: 5 depths, decayed and not.
    assert len(groups) == len({(g['lr_scale'], g['apply_decay']) for g in groups}) == 10


def test_layer_decay_front_end_by_order():
    """A front end registered before the blocks (CED's init_bn, Whisper's conv1) is depth 0 whatever its name; a
    norm registered after them is L + 1."""
    model = nn.Module()
    model.init_bn = nn.BatchNorm1d(4)
    model.blocks = nn.ModuleList([Block(4, True), Block(4, True)])
    model.post_norm = nn.LayerNorm(4)
    groups = param_groups(model, 0.0, layer_decay=0.5)
    assert group_of(groups, 'init_bn.weight')['lr_scale'] == 0.5 ** 3
    assert group_of(groups, 'blocks.0.qkv.weight')['lr_scale'] == 0.5 ** 2
    assert group_of(groups, 'post_norm.weight')['lr_scale'] == 1.0


def test_layer_decay_needs_blocks():
    with pytest.raises(EvarError, match='Sequential has no transformer blocks'):
        param_groups(nn.Sequential(nn.Linear(2, 2)), 0.0, layer_decay=0.65)
    with pytest.raises(EvarError, match='layer_decay must be in'):
        param_groups(TinyViT(), 0.0, layer_decay=1.5)


def quadratic_problem():
    torch.manual_seed(0)
    x = torch.randn(64, 6)
    y = x @ torch.randn(6, 1) + 0.5
    model = nn.Linear(6, 1)
    return model, lambda: nn.functional.mse_loss(model(x), y)


# lars at weight decay 0 (EVAR's setting) is momentum SGD, as timm's Lars is then.
CASES = [('sgd', 0.05, 0.2), ('adamw', 0.05, 0.2), ('lars', 0.05, 0.2), ('lamb', 0.05, 0.2)]


def test_cases_cover_optimizers():
    assert tuple(name for name, _, _ in CASES) == OPTIMIZERS


@pytest.mark.parametrize('name, lr, bar', CASES)
def test_each_optimizer_reduces_quadratic(name, lr, bar):
    model, loss_fn = quadratic_problem()
    optimizer = make_optimizer(name, param_groups(model, 0.0), lr)
    start = loss_fn().item()
    for _ in range(100):
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss_fn().item() < bar * start


def test_lars_is_evars_timm_lars():
    """timm's Lars (EVAR's) applies its trust ratio only with weight decay: at EVAR's weight decay 0 the steps are
    momentum SGD's exactly; with weight decay the layer-wise trust ratio scales a weight matrix's step to about
    lr * 0.001 * |w| (LARS, You et al. 2017), far from SGD's."""
    runs = {}
    for name, decay in (('sgd', 0.0), ('lars', 0.0), ('lars', 0.1)):
        torch.manual_seed(0)
        model, loss_fn = quadratic_problem()
        start = model.weight.detach().clone()
        optimizer = make_optimizer(name, param_groups(model, 0.0), 0.05, weight_decay=decay)
        for _ in range(5):
            optimizer.zero_grad()
            loss_fn().backward()
            optimizer.step()
        runs[name, decay] = (model.weight.detach() - start).norm().item(), start.norm().item()
    assert runs['lars', 0.0] == runs['sgd', 0.0]
    moved, norm = runs['lars', 0.1]
    # each raw update is at most lr * 0.001 * |w|; momentum 0.9 sums them over 5 steps with weights 1, 1.9, ... 4.1
    bound = sum(sum(0.9 ** j for j in range(k + 1)) for k in range(5)) * 0.05 * 0.001 * norm
    assert moved < bound * 1.01 and moved < runs['sgd', 0.0][0] / 10


def test_make_optimizer_settings():
    model = TinyViT()
    groups = param_groups(model, 0.05, layer_decay=0.5)
    adamw = make_optimizer('adamw', groups, 1e-3)
    assert isinstance(adamw, torch.optim.AdamW)
    for g in adamw.param_groups:
        assert g['lr'] == pytest.approx(1e-3 * g['lr_scale'], rel=1e-12)
        assert g['weight_decay'] == (1e-4 if g['apply_decay'] else 0.0)
        assert g['betas'] == (0.9, 0.95) and g['amsgrad'] and g['eps'] == 1e-8
    sgd = make_optimizer('sgd', groups, 0.1)
    assert all(g['momentum'] == 0.9 and g['weight_decay'] == 0.0 for g in sgd.param_groups)
    assert all(g['weight_decay'] == 0.0 for g in make_optimizer('lars', groups, 0.1).param_groups)
    assert {g['weight_decay'] for g in make_optimizer('lamb', groups, 0.1).param_groups} == {0.0, 0.01}
    assert {g['weight_decay'] for g in make_optimizer('sgd', groups, 0.1, weight_decay=0.3).param_groups} == {0.0, 0.3}
    assert groups[0]['weight_decay'] in (0.0, 0.05) and 'lr' not in groups[0]  # inputs untouched


def test_make_optimizer_errors(monkeypatch):
    groups = param_groups(nn.Linear(2, 2), 0.0)
    with pytest.raises(EvarError, match='sgd, adamw, lars, lamb'):
        make_optimizer('adam', groups, 0.1)
    with pytest.raises(EvarError, match='> 0'):
        make_optimizer('sgd', groups, 0.0)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(EvarError, match='no trainable parameters'):
        make_optimizer('sgd', param_groups(frozen, 0.0), 0.1)
    monkeypatch.setitem(sys.modules, 'pytorch_optimizer', None)  # import now raises ImportError
    with pytest.raises(EvarError, match=r"pip install 'evar\[finetune\]'"):
        make_optimizer('lamb', groups, 0.1)
    assert isinstance(make_optimizer('sgd', groups, 0.1), torch.optim.SGD)  # sgd/adamw need no extra


def timm_cosine_lr(t, lr0, epochs, warmup, lr_min):
    """timm CosineLRScheduler's formula, written out independently in float64 (Python floats)."""
    if t < warmup:
        return lr0 * t / warmup
    if t >= epochs:
        return lr_min
    return lr_min + 0.5 * (lr0 - lr_min) * (1 + math.cos(math.pi * t / epochs))


def test_schedule_matches_timm_formula():
    epochs, warmup, steps, lr0, lr_min = 10, 2, 7, 0.5, 1e-4
    model = TinyViT()
    optimizer = make_optimizer('sgd', param_groups(model, 0.0, layer_decay=0.5), lr0)
    scheduler = cosine_schedule(optimizer, epochs, warmup, steps, lr_min=lr_min)
    seen = []
    for _ in range(epochs * steps + 3):
        seen.append([g['lr'] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    scales = [g['lr_scale'] for g in optimizer.param_groups]
    # Sample points: warm-up start, mid warm-up, warm-up end, middle, last iteration, past the end.
    for k in (0, 5, warmup * steps, epochs * steps // 2, epochs * steps - 1, epochs * steps, epochs * steps + 2):
        for lr, scale in zip(seen[k], scales):
            # Group lrs are Python floats computed in float64; rel 1e-12 covers the few roundings on the way.
            assert lr == pytest.approx(scale * timm_cosine_lr(k / steps, lr0, epochs, warmup, lr_min), rel=1e-12, abs=0)
    assert seen[0] == [0.0] * len(scales)
    head = scales.index(1.0)
    assert seen[warmup * steps][head] == pytest.approx(lr0 * (lr_min / lr0 + 0.5 * (1 - lr_min / lr0) *
                                                              (1 + math.cos(math.pi * warmup / epochs))), rel=1e-12)
    # The floor scales with the group: lr_min * lr_scale at the end.
    assert seen[-1] == pytest.approx([lr_min * s for s in scales], rel=1e-12)


def test_schedule_without_warmup_starts_at_lr():
    optimizer = make_optimizer('sgd', param_groups(nn.Linear(2, 2), 0.0), 0.3)
    cosine_schedule(optimizer, 5, 0, 4)
    assert optimizer.param_groups[0]['lr'] == pytest.approx(0.3, rel=1e-12)


def test_schedule_state_dict_round_trip():
    def run(k, resume_from=None):
        torch.manual_seed(1)
        model = TinyViT()
        optimizer = make_optimizer('adamw', param_groups(model, 0.05, layer_decay=0.7), 1e-2)
        scheduler = cosine_schedule(optimizer, 3, 1, 5)
        if resume_from:
            model.load_state_dict(resume_from[0])
            optimizer.load_state_dict(resume_from[1])
            scheduler.load_state_dict(resume_from[2])
        x = torch.randn(4, 5, 4, generator=torch.Generator().manual_seed(2))
        for _ in range(k):
            model(x).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
        return model, optimizer, scheduler

    model, optimizer, scheduler = run(4)
    saved = (model.state_dict(), optimizer.state_dict(), scheduler.state_dict())
    assert scheduler.state_dict()['last_epoch'] == 4
    _, _, fresh = run(0)
    fresh.load_state_dict(scheduler.state_dict())
    assert fresh.state_dict() == scheduler.state_dict()
    # Resuming after 4 steps and doing 6 more equals 10 uninterrupted steps, bit for bit (same ops, same order).
    resumed_model, resumed_opt, _ = run(6, resume_from=saved)
    straight_model, straight_opt, _ = run(10)
    assert [g['lr'] for g in resumed_opt.param_groups] == [g['lr'] for g in straight_opt.param_groups]
    for a, b in zip(resumed_model.parameters(), straight_model.parameters()):
        assert torch.equal(a, b)


def test_schedule_errors():
    optimizer = make_optimizer('sgd', param_groups(nn.Linear(2, 2), 0.0), 0.3)
    with pytest.raises(EvarError, match='steps_per_epoch'):
        cosine_schedule(optimizer, 5, 1, 0)
    with pytest.raises(EvarError, match='epochs must be > 0'):
        cosine_schedule(optimizer, 0, 0, 3)


@pytest.mark.parametrize('fused', [True, False])
def test_lora_adapters(fused):
    torch.manual_seed(0)
    model = TinyViT(fused=fused).eval()
    x = torch.randn(2, 5, 4)
    before = model(x)
    add_lora(model, r=2, alpha=4, dropout=0.1)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all('lora_A' in n or 'lora_B' in n for n in trainable)
    expected = 3 * 2 * 3 if not fused else 3 * 2  # blocks x (A, B) x projections
    assert len(trainable) == expected
    assert torch.equal(model(x), before)  # B = 0 at init: the base model's output exactly
    model.head.requires_grad_(True)  # the caller unfreezes the head
    model.train()
    model(x).square().sum().backward()
    for name, param in model.named_parameters():
        if 'lora_B' in name or name.startswith('head.'):
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        elif not param.requires_grad:
            assert param.grad is None, name


def test_lora_errors():
    with pytest.raises(EvarError, match='Sequential has no nn.Linear named'):
        add_lora(nn.Sequential(nn.Linear(2, 2)), r=4)
    with pytest.raises(EvarError, match='rank'):
        add_lora(TinyViT(), r=0)


def test_lora_inside_hugging_face_wrapper():
    """evar's HF wrappers expose the backbone's `.config`; peft then takes the wrapper for a transformers model and
    failed reading `base_model_prefix` before add_lora put a plain holder at the root."""
    from transformers import ASTConfig, ASTModel

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = ASTModel(ASTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=32, num_mel_bins=16, max_length=16, frequency_stride=8,
                                               time_stride=8))
            self.config = self.backbone.config

    torch.manual_seed(0)
    model = Wrapper().eval()
    x = torch.randn(1, 16, 16)
    before = model.backbone(x).last_hidden_state
    assert add_lora(model, r=2) is model
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 6 and all('.lora_' in n for n in trainable)  # q, k, v x (A, B)
    assert torch.equal(model.backbone(x).last_hidden_state, before)
