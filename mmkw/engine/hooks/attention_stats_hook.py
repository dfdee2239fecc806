"""Log how much of each warehouse's attention leaves the initial assignment.

At the start of training every KW layer mixes only its own cells (the
initial assignment, temperature 1); what the paper's Figure 3 shows is the
learnt attention reaching into other layers' cells. This hook logs, per
warehouse, the mean ``|alpha|`` of its layers on their own cells and on the
other layers' cells, at the first training iteration of a run and every
``interval`` training iterations, as MessageHub scalars
(``train/kw_attention/<warehouse>_own`` and ``..._foreign``), so they reach
every visualizer backend and log analysis tool (``analyze_logs.py
plot_curve --keys ...``). The first measurement, and the hook running before
the ``LoggerHook``, put the scalars in the first logged record: the log
analysis tools take the valid keys from that record.
"""
from typing import Dict

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmkw.cnn import bound_layers
from mmkw.registry import register_hook

__all__ = ['KWAttentionStatsHook']


@register_hook
class KWAttentionStatsHook(Hook):
    """Log the attention's mass on own vs. other layers' cells per
    warehouse.

    At the first training iteration of a run (a resumed one too) and every
    ``interval`` training iterations, forward hooks on the KW attentions
    read ``alpha`` of that iteration (no extra forward pass) and log, per
    warehouse, the mean ``|alpha|`` over its layers' own cells and over the
    other layers' cells of the warehouse. Each iteration's log record
    carries the latest measurement (the hook runs before the
    ``LoggerHook``), from the first record on.

    Args:
        interval (int): Iterations between two measurements. Defaults to 50.

    Example:
        >>> custom_hooks = [dict(type='KWAttentionStatsHook', interval=50)]
    """

    # Before the LoggerHook (BELOW_NORMAL): an iteration's measurement is
    # in that iteration's log record, the first one included.
    priority = 'NORMAL'

    def __init__(self, interval: int = 50):
        if not isinstance(interval, int) or isinstance(interval, bool) \
                or interval < 1:
            raise ValueError(f'interval must be a positive int, got '
                             f'{interval!r}')
        self.interval = interval
        self._handles: list = []
        self._sums: Dict[str, torch.Tensor] = {}
        self._first = True

    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        self._layers = list(bound_layers(model))
        if not self._layers:
            raise ValueError(f'KWAttentionStatsHook needs a model with KW '
                             f'layers; {type(model).__name__} has none')

    def before_train(self, runner) -> None:
        self._first = True

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if (runner.iter + 1) % self.interval and not self._first:
            return
        self._first = False
        self._sums = {}
        for record, layer in self._layers:
            self._handles.append(
                layer.attention.register_forward_hook(
                    self._recorder(record.qualified_warehouse,
                                   record.plan.start, record.plan.num_cells)))

    def _recorder(self, warehouse: str, start: int, num_cells: int):

        def record(module, args, output):
            alpha = output.alpha  # an AttentionOutput
            a = alpha.detach().abs().float()
            own = a[:, start:start + num_cells]
            sums = self._sums.setdefault(warehouse, torch.zeros(4))
            sums += torch.stack([
                own.sum().cpu(),
                torch.tensor(float(own.numel())), (a.sum() - own.sum()).cpu(),
                torch.tensor(float(a.numel() - own.numel()))
            ])

        return record

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        if not self._handles:
            return
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for warehouse, (own, n_own, foreign, n_foreign) in \
                self._sums.items():
            prefix = f'train/kw_attention/{warehouse}'
            runner.message_hub.update_scalar(f'{prefix}_own',
                                             float(own / n_own))
            if n_foreign > 0:
                runner.message_hub.update_scalar(f'{prefix}_foreign',
                                                 float(foreign / n_foreign))
