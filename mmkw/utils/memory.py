"""What autograd keeps for backward."""
from typing import Callable, Collection

import torch

__all__ = ['saved_tensor_bytes']


def saved_tensor_bytes(step: Callable, exclude: Collection[int] = ()) -> int:
    """Bytes autograd saves for backward while ``step()`` runs.

    Each storage is counted once (a tensor saved by several operations, or
    views of one tensor, count once), so the figure is deterministic and
    independent of the machine.

    Args:
        step (Callable): Runs the forward pass to measure.
        exclude (Collection[int]): Data pointers of storages to leave out,
            e.g. ``{p.untyped_storage().data_ptr() for p in
            model.parameters()}`` for the activations alone.

    Returns:
        int: The bytes of the distinct storages saved.
    """
    seen = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in exclude:
            seen[storage.data_ptr()] = storage.nbytes()
        # Kept detached: a saved tensor packed with its own grad_fn (the
        # output of autocast's weight cast, saved by the conv reading it)
        # would hold the graph that holds it, a cycle that kept whole models
        # alive (gigabytes per call under autocast).
        return tensor.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())
