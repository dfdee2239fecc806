"""A tiny KW classifier, an image-folder dataset and a recording hook for
tests that run a real MMEngine ``Runner`` on CPU in about a second."""
import copy
import json
import os
import os.path as osp
import uuid
from typing import List, Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dist import all_gather, get_world_size, is_main_process
from mmengine.hooks import EMAHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

import mmkw
from mmkw.registry import register_hook

__all__ = [
    'make_image_folder', 'tiny_classifier_cfg', 'train_on_image_folder',
    'RecordKWHook', 'DDPProbeHook', 'tiny_runner'
]

NUM_CLASSES = 4


def make_image_folder(root: str, per_class: int = 4, size: int = 32) -> str:
    """Write ``NUM_CLASSES`` class folders of random PNG images.

    Args:
        root (str): Directory to fill.
        per_class (int): Images per class. Defaults to 4.
        size (int): Image side. Defaults to 32.

    Returns:
        str: ``root``.
    """
    import cv2
    rng = np.random.default_rng(0)
    for c in range(NUM_CLASSES):
        for i in range(per_class):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            img[..., c % 3] //= 2  # some class signal
            path = osp.join(root, f'class{c}', f'{i}.png')
            os.makedirs(osp.dirname(path), exist_ok=True)
            cv2.imwrite(path, img)
    return root


def tiny_classifier_cfg(work_dir: str,
                        data_root: str,
                        max_epochs: int = 2,
                        temperature_epochs: Optional[int] = 2,
                        with_val: bool = False,
                        by_epoch: bool = True,
                        max_iters: int = 8,
                        **kwargs) -> dict:
    """An MMPretrain config: ImageClassifier + tiny KWResNet18 on 32x32.

    Args:
        work_dir (str): Work directory.
        data_root (str): An image folder from :func:`make_image_folder`.
        max_epochs (int): Epochs of an epoch-based loop. Defaults to 2.
        temperature_epochs (int, optional): ``epochs`` of the
            KWTemperatureHook; None for no hook. Defaults to 2.
        with_val (bool): Add a validation loop (Accuracy). Defaults to
            False.
        by_epoch (bool): Epoch-based loop, else iteration-based with
            ``max_iters``. Defaults to True.
        max_iters (int): Iterations of an iteration-based loop.
            Defaults to 8.
        **kwargs: Top-level config overrides.

    Returns:
        dict: The config.
    """
    dataset = dict(
        type='CustomDataset',
        data_root=data_root,
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='PackInputs')])
    cfg = dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['mmkw'], allow_failed_imports=False),
        model=dict(
            type='ImageClassifier',
            backbone=dict(
                type='KWResNet', depth=18, base_channels=8, stem_channels=8),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=NUM_CLASSES,
                in_channels=64,
                loss=dict(type='CrossEntropyLoss'))),
        work_dir=work_dir,
        train_dataloader=dict(
            batch_size=4,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            dataset=dataset),
        optim_wrapper=dict(
            optimizer=dict(
                type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.5, end=4, by_epoch=False)
        ],
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        log_level='WARNING',
        custom_hooks=[dict(type='RecordKWHook')])
    if by_epoch:
        cfg['train_cfg'] = dict(
            by_epoch=True, max_epochs=max_epochs, val_interval=1)
    else:
        cfg['train_cfg'] = dict(
            by_epoch=False, max_iters=max_iters, val_interval=4)
        cfg['default_hooks']['checkpoint'] = dict(
            type='CheckpointHook', interval=4, by_epoch=False)
    if temperature_epochs is not None:
        cfg['custom_hooks'].append(
            dict(type='KWTemperatureHook', epochs=temperature_epochs))
    if with_val:
        cfg['val_dataloader'] = dict(
            batch_size=8,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dataset)
        cfg['val_evaluator'] = dict(type='Accuracy', topk=(1, ))
        cfg['val_cfg'] = dict()
    cfg.update(kwargs)
    return cfg


def tiny_runner(cfg: dict):
    """A Runner for a copy of ``cfg`` with a name of its own.

    Runners started within one second would otherwise share a timestamp
    name, and with it their logger and visualizer instances.
    """
    cfg = copy.deepcopy(cfg)
    cfg['experiment_name'] = f'kw_tiny_{uuid.uuid4().hex[:8]}'
    return Runner.from_cfg(Config(cfg))


@register_hook
class RecordKWHook(Hook):
    """Records, per training iteration, the temperature of the model (and of
    any EMA copy) the iteration runs with, its loss and the logged
    temperature; and the temperatures seen during validation and right
    after it."""

    priority = 'LOWEST'  # after KWTemperatureHook and EMAHook

    def __init__(self):
        self.train_log: List[dict] = []
        self.val_log: List[dict] = []
        self.after_val_log: List[dict] = []

    def _temps(self, runner) -> dict:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        temps = dict(model=mmkw.get_temperature(model))
        for hook in runner.hooks:
            if isinstance(hook, EMAHook) and hasattr(hook, 'ema_model'):
                temps['ema'] = mmkw.get_temperature(hook.ema_model.module)
        return temps

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.train_log.append(dict(iter=runner.iter, **self._temps(runner)))

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        self.train_log[-1].update(
            loss=outputs['loss'].item(),
            logged=runner.message_hub.get_scalar(
                'train/temperature').current())

    def before_val_iter(self, runner, batch_idx, data_batch=None):
        self.val_log.append(self._temps(runner))

    def after_val_epoch(self, runner, metrics=None):
        self.after_val_log.append(self._temps(runner))


@register_hook
class DDPProbeHook(Hook):
    """Compares the replicas of a distributed run after every training
    iteration and writes what it saw to ``work_dir/ddp_probe.json`` (rank
    0): per iteration, the largest difference between the ranks' warehouse
    tensors, how far the warehouses moved from their initial values, and
    each rank's loss and temperature."""

    priority = 'LOWEST'

    def before_train(self, runner):
        self.records = []
        self.initial = self._warehouses(runner).clone()

    def _warehouses(self, runner) -> torch.Tensor:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        weights = [
            p.detach().flatten() for name, p in model.named_parameters()
            if 'warehouse_manager' in name
        ]
        return torch.cat(weights)

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        weights = self._warehouses(runner)
        stats = torch.tensor([
            outputs['loss'].item(),
            mmkw.get_temperature(
                runner.model.module if hasattr(runner.model, 'module'
                                               ) else runner.model)
        ],
                             dtype=torch.float64)
        all_weights = all_gather(weights)
        all_stats = all_gather(stats)
        self.records.append(
            dict(
                iter=runner.iter,
                replica_diff=max((w - all_weights[0]).abs().max().item()
                                 for w in all_weights),
                moved=(weights - self.initial).abs().max().item(),
                losses=[s[0].item() for s in all_stats],
                temperatures=[s[1].item() for s in all_stats]))

    def after_train(self, runner):
        if is_main_process():
            with open(osp.join(runner.work_dir, 'ddp_probe.json'), 'w') as f:
                json.dump(
                    dict(world_size=get_world_size(), records=self.records), f)


def train_on_image_folder(cfg: Config,
                          data_root: str,
                          work_dir: str,
                          iters: int = 2,
                          transforms=()) -> Runner:
    """Shrink an ImageNet classification config to ``iters`` iterations of
    batch 4 on an image folder from :func:`make_image_folder` (no
    validation, no checkpoint, the temperature over those iterations) and
    train it.

    Args:
        cfg (Config): The config (changed in place).
        data_root (str): The image folder.
        work_dir (str): Work directory.
        iters (int): Iterations. Defaults to 2.
        transforms (Sequence[dict]): Transforms between loading and
            packing. Defaults to none.

    Returns:
        Runner: The runner, after training.
    """
    cfg.train_dataloader = dict(
        batch_size=4,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=True),
        dataset=dict(
            type='CustomDataset',
            data_root=data_root,
            pipeline=[
                dict(type='LoadImageFromFile'), *transforms,
                dict(type='PackInputs')
            ]))
    cfg.model.head.num_classes = NUM_CLASSES
    cfg.train_cfg = dict(by_epoch=False, max_iters=iters)
    cfg.param_scheduler = []  # a 100-300 epoch schedule does not fit
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator',
                'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg.pop(key, None)
    cfg.custom_hooks = [dict(type='KWTemperatureHook', iters=iters)]
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=-1, save_last=False)
    cfg.work_dir = work_dir
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner
