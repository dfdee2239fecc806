"""KWAttentionStatsHook: the attention's mass on own vs. other layers'
cells, per warehouse, logged through the MessageHub."""
import pytest
import torch
from kw_tiny import make_image_folder, tiny_classifier_cfg, tiny_runner

import mmkw  # noqa: F401
from mmkw.cnn import bound_layers
from mmkw.engine import KWAttentionStatsHook

pytestmark = pytest.mark.usefixtures('one_thread')


def test_logs_own_and_foreign_mass_every_interval(tmp_path):
    data = make_image_folder(str(tmp_path / 'images'))
    cfg = tiny_classifier_cfg(
        str(tmp_path / 'work'),
        data,
        by_epoch=False,
        max_iters=6,
        temperature_epochs=None,
        custom_hooks=[
            dict(type='KWAttentionStatsHook', interval=3),
            dict(type='KWTemperatureHook', iters=6)
        ])
    runner = tiny_runner(cfg)
    runner.train()
    hub = runner.message_hub
    names = sorted(
        {r.qualified_warehouse
         for r, _ in bound_layers(runner.model)})
    assert names == [f'backbone.stage{i}' for i in range(4)]
    for name in names:
        own = hub.get_scalar(f'train/kw_attention/{name}_own')
        foreign = hub.get_scalar(f'train/kw_attention/{name}_foreign')
        # Measured at iterations 1, 3 and 6.
        assert len(own.data[0]) == len(foreign.data[0]) == 3
    # Iteration 3 runs at tau = 1/2: half of the initial assignment (one-hot
    # on own cells) remains, so the own cells carry more; at iteration 6
    # (tau = 0) the learnt attention alone remains.
    _, own_3, own_6 = hub.get_scalar(
        'train/kw_attention/backbone.stage1_own').data[0]
    _, foreign_3, _ = hub.get_scalar(
        'train/kw_attention/backbone.stage1_foreign').data[0]
    assert own_3 > 2 * foreign_3
    assert own_6 < own_3


def test_measurement_matches_alpha():
    """The logged own/foreign means are those of alpha itself."""
    from mmpretrain.registry import MODELS
    model = MODELS.build(
        dict(type='KWResNet', depth=18, base_channels=8, stem_channels=8))
    mmkw.set_temperature(model, 0.5)
    hook = KWAttentionStatsHook(interval=1)
    runner = type('Runner', (), {})()
    runner.model, runner.iter = model, 0
    runner.message_hub = type(
        'Hub', (), {
            'scalars': {},
            'update_scalar': lambda self, k, v: self.scalars.__setitem__(k, v)
        })()
    hook.before_run(runner)
    # What the hook should find: alpha of every stage1 layer, by hand.
    stage1 = [(m, r.plan) for r, m in bound_layers(model)
              if r.qualified_warehouse == 'stage1']
    seen = []
    handles = [
        m.attention.register_forward_hook(
            lambda mod, a, out, lp=lp: seen.append((out.alpha.abs(), lp)))
        for m, lp in stage1
    ]
    hook.before_train_iter(runner, 0)
    model.eval()(torch.rand(2, 3, 32, 32))
    hook.after_train_iter(runner, 0)
    for h in handles:
        h.remove()
    own = sum(a[:, lp.start:lp.start + lp.num_cells].sum() for a, lp in seen)
    n_own = sum(a[:, lp.start:lp.start + lp.num_cells].numel()
                for a, lp in seen)
    total = sum(a.sum() for a, _ in seen)
    n_total = sum(a.numel() for a, _ in seen)
    scalars = runner.message_hub.scalars
    assert scalars['train/kw_attention/stage1_own'] == pytest.approx(
        float(own / n_own), rel=1e-5)
    assert scalars['train/kw_attention/stage1_foreign'] == pytest.approx(
        float((total - own) / (n_total - n_own)), rel=1e-5)
    assert len(stage1) == 5


def test_arguments_and_model_checked():
    with pytest.raises(ValueError, match='interval must be a positive int'):
        KWAttentionStatsHook(interval=0)
    runner = type('Runner', (), {})()
    runner.model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match='Linear has none'):
        KWAttentionStatsHook().before_run(runner)
