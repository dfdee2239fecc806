"""The KernelWarehouse temperature schedule as an MMEngine hook."""
import logging
from typing import Dict, List, Optional

import torch.nn as nn
from mmengine.hooks import EMAHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmkw.cnn import get_temperature, pinned_managers, set_temperature
from mmkw.registry import register_hook

__all__ = ['KWTemperatureHook']


@register_hook
class KWTemperatureHook(Hook):
    """Drive the attention temperature of every KW layer during training.

    The temperature falls linearly from 1 to 0 over the first ``T`` epochs
    (or ``iters`` iterations) and is updated before every training iteration
    (Li & Yao, ICML 2024, and the official code)::

        tau = max(0, (T * I - (I * epoch + iter + 1)) / (T * I))

    with ``I`` the iterations per epoch (``len(runner.train_dataloader)``).
    ``I * epoch + iter`` is the runner's global iteration count, so ``tau``
    is a function of the runner's progress alone and ``--resume`` continues
    the schedule exactly. The same formula serves epoch- and iteration-based
    loops; with ``iters=N`` it is ``max(0, (N - (runner.iter + 1)) / N)``.

    Validation and test always run at ``tau = 0`` (the learnt attention);
    the training temperature is restored afterwards. The averaged copy of an
    :class:`~mmengine.hooks.EMAHook` (a deep copy with its own KW layers)
    follows the same schedule and is evaluated at ``tau = 0`` too. Wrapped
    models (``MMDistributedDataParallel``, ...) are unwrapped. The current
    value is logged as ``train/temperature``.

    Models fine-tuned from a KW checkpoint pin ``tau = 0``
    (``attention_init=False``: a backbone, the KW head, ``KWConverted`` or
    any network converted with it) and must not use this hook; it refuses
    every such model (it reads the warehouse managers).

    Args:
        epochs (int, optional): Length ``T`` of the schedule in epochs.
            Defaults to None.
        iters (int, optional): Length of the schedule in iterations.
            Defaults to None. Exactly one of ``epochs`` and ``iters`` is
            given.

    Example:
        >>> custom_hooks = [dict(type='KWTemperatureHook', epochs=10)]
    """

    # Below EMAHook (NORMAL or ABOVE_NORMAL): MMPretrain's EMAHook
    # re-evaluates the source model inside its after_val_epoch
    # (evaluate_on_origin), which must still run at tau = 0; above
    # CheckpointHook, so a best checkpoint keeps the training tau.
    priority = 'LOW'

    def __init__(self,
                 epochs: Optional[int] = None,
                 iters: Optional[int] = None):
        if (epochs is None) == (iters is None):
            raise ValueError(f'give exactly one of epochs and iters, got '
                             f'epochs={epochs!r}, iters={iters!r}')
        for name, value in (('epochs', epochs), ('iters', iters)):
            if value is not None and (isinstance(
                    value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(
                    f'{name} must be a positive int, got {value!r}')
        self.epochs = epochs
        self.iters = iters
        self._saved: Dict[int, Optional[float]] = {}

    def temperature(self, runner) -> float:
        """The training temperature of the runner's current iteration.

        Args:
            runner (Runner): The runner; ``runner.iter`` iterations are
                done.

        Returns:
            float: ``tau`` in ``[0, 1]``.
        """
        if self.iters is not None:
            total = self.iters
        else:
            total = self.epochs * len(runner.train_dataloader)
        return max(0.0, (total - (runner.iter + 1)) / total)

    def before_train(self, runner) -> None:
        """Check that the model has KW layers that may be scheduled."""
        models = self._models(runner)
        if not any(get_temperature(m) is not None for m in models):
            print_log(
                'KWTemperatureHook: the model has no KernelWarehouse '
                'layers, the hook does nothing', 'current', logging.WARNING)
        pinned = pinned_managers(models[0])
        if pinned:
            raise ValueError(
                f'KWTemperatureHook drives the temperature from 1 to 0, but '
                f'the KW layers of {", ".join(pinned)} were built with '
                f'attention_init=False (fine-tuning pins tau = 0): remove '
                f'the hook from custom_hooks')

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch=None) -> None:
        """Set the scheduled temperature before each training iteration."""
        tau = self.temperature(runner)
        for model in self._models(runner):
            set_temperature(model, tau)
        runner.message_hub.update_scalar('train/temperature', tau)

    def before_val_epoch(self, runner) -> None:
        """Evaluate at ``tau = 0``."""
        self._evaluate_at_zero(runner)

    def after_val_epoch(self, runner, metrics=None) -> None:
        """Restore the training temperature."""
        self._restore(runner)

    def before_test_epoch(self, runner) -> None:
        """Test at ``tau = 0``."""
        self._evaluate_at_zero(runner)

    def after_test_epoch(self, runner, metrics=None) -> None:
        """Restore the training temperature."""
        self._restore(runner)

    def _models(self, runner) -> List[nn.Module]:
        """The runner's model, unwrapped, and every EMA copy of it."""
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        models = [model]
        for hook in runner.hooks:
            if isinstance(hook, EMAHook) and hasattr(hook, 'ema_model'):
                models.append(hook.ema_model.module)
        return models

    def _evaluate_at_zero(self, runner) -> None:
        self._saved = {}
        for model in self._models(runner):
            self._saved[id(model)] = get_temperature(model)
            set_temperature(model, 0.0)

    def _restore(self, runner) -> None:
        for model in self._models(runner):
            tau = self._saved.get(id(model))
            if tau is not None:
                set_temperature(model, tau)
        self._saved = {}

    def __repr__(self) -> str:
        length = (f'epochs={self.epochs}'
                  if self.epochs is not None else f'iters={self.iters}')
        return f'{self.__class__.__name__}({length})'
