"""Checkpoints that survive a kill while they are written.

MMEngine 0.10.7 writes a checkpoint in place, and its ``CheckpointHook``
with ``max_keep_ckpts`` deletes the oldest checkpoint *before* it writes the
new one. A process killed while writing (out of memory, a pre-empted job)
then leaves a truncated file, and with ``max_keep_ckpts=1`` no complete
checkpoint at all. ``import mmkw`` changes both (:mod:`mmkw.compat` puts
these functions in place of MMEngine's):

- :func:`save_checkpoint` writes a local checkpoint to a temporary file in
  the same directory and renames it into place (``os.replace``, atomic on
  POSIX): the named file is always complete (other storage backends keep
  MMEngine's writer);
- :func:`save_then_prune` saves first and deletes the checkpoints beyond
  ``max_keep_ckpts`` afterwards, so the previous checkpoint exists until
  the new one does.

:func:`latest_readable_checkpoint` serves ``--resume`` when
``last_checkpoint`` names a file that is gone or damaged.
"""
import io
import os
import os.path as osp
import re
import zipfile
from typing import Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.runner import checkpoint as mmengine_checkpoint

__all__ = [
    'save_checkpoint', 'save_then_prune', 'is_readable_checkpoint',
    'latest_readable_checkpoint'
]

_mmengine_save_checkpoint = mmengine_checkpoint.save_checkpoint
_mmengine_save_with_step = CheckpointHook._save_checkpoint_with_step


def save_checkpoint(checkpoint: dict,
                    filename: str,
                    file_client_args: Optional[dict] = None,
                    backend_args: Optional[dict] = None) -> None:
    """MMEngine's ``save_checkpoint``, atomic for local files.

    Args:
        checkpoint (dict): The checkpoint.
        filename (str): Where to save it.
        file_client_args, backend_args: As MMEngine's; a local file with
            neither is written atomically, anything else by MMEngine.
    """
    if file_client_args or backend_args or '://' in filename:
        _mmengine_save_checkpoint(checkpoint, filename, file_client_args,
                                  backend_args)
        return
    directory = osp.dirname(osp.abspath(filename))
    os.makedirs(directory, exist_ok=True)
    with io.BytesIO() as buffer:
        torch.save(checkpoint, buffer)
        data = buffer.getvalue()
    partial = osp.join(directory,
                       f'.{osp.basename(filename)}.{os.getpid()}.partial')
    try:
        with open(partial, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, filename)
    finally:
        if osp.exists(partial):
            os.remove(partial)


def save_then_prune(self: CheckpointHook, runner, step: int, meta) -> None:
    """``CheckpointHook._save_checkpoint_with_step`` that deletes the
    checkpoints beyond ``max_keep_ckpts`` after saving the new one, not
    before. The kept steps are recorded as MMEngine records them."""
    stale = []
    keep = self.max_keep_ckpts
    if keep > 0 and not (self.keep_ckpt_ids
                         and self.keep_ckpt_ids[-1] == step):
        if len(self.keep_ckpt_ids) == keep:
            stale.append(self.keep_ckpt_ids.popleft())
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids',
                                       list(self.keep_ckpt_ids))
    # MMEngine's own method saves and writes last_checkpoint; with pruning
    # off it leaves keep_ckpt_ids (done above) alone.
    self.max_keep_ckpts = -1
    try:
        _mmengine_save_with_step(self, runner, step, meta)
    finally:
        self.max_keep_ckpts = keep
    if not is_main_process():
        return
    for old in stale:
        path = self.file_backend.join_path(self.out_dir,
                                           self.filename_tmpl.format(old))
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # DeepSpeed's checkpoints
            self.file_backend.rmtree(path)


def is_readable_checkpoint(path: str) -> bool:
    """Whether ``path`` is a complete PyTorch (zip) checkpoint: every member
    is there and passes its CRC. Nothing is unpickled."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile):
        return False


def latest_readable_checkpoint(work_dir: str) -> Optional[str]:
    """The newest complete ``epoch_N.pth`` / ``iter_N.pth`` in ``work_dir``
    (the highest N, then the latest written), or None."""
    if not osp.isdir(work_dir):
        return None
    found = []
    for name in os.listdir(work_dir):
        match = re.fullmatch(r'(?:epoch|iter)_(\d+)\.pth', name)
        path = osp.join(work_dir, name)
        if match and osp.isfile(path):
            found.append((int(match.group(1)), osp.getmtime(path), path))
    for _, _, path in sorted(found, reverse=True):
        if is_readable_checkpoint(path):
            return path
    return None
