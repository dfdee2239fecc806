"""Safe loading of MMEngine checkpoints with PyTorch >= 2.6.

MMEngine 0.10.7 loads local checkpoints with a bare ``torch.load``. Since
PyTorch 2.6 that means ``weights_only=True``, which refuses the few
non-tensor objects every checkpoint written by an MMEngine ``Runner``
carries (the message hub's ``HistoryBuffer`` and the NumPy arrays and scalars
inside it), so ``--resume``, ``load_from`` and ``init_cfg=dict(type=
'Pretrained')`` fail on MMEngine's own files. Falling back to
``weights_only=False`` would execute arbitrary code from a checkpoint.

``import mmkw`` re-registers MMEngine's local-file scheme with
:func:`load_from_local` (:mod:`mmkw.compat` lists and applies this and the
changes below), which keeps ``weights_only=True`` and allows
exactly the globals listed in :func:`safe_checkpoint_globals`. Anything else
in a file is refused with a :class:`CheckpointLoadError` that names the file
and the offending object.

Checkpoints named by URL are no safer in MMEngine: its ``http(s)://``
loader calls ``torch.hub.load_state_dict_from_url``, whose ``weights_only``
defaults to False, and ``torchvision://``, ``modelzoo://``,
``open-mmlab://``, ``openmmlab://`` and ``mmcls://`` resolve to URLs and
reach that same function. mmkw re-registers all of these schemes:
:func:`load_from_http` downloads to the usual cache (``torch.hub``'s
``checkpoints`` directory, rank 0 first as MMEngine does, under a name keyed
by the whole URL) and then loads the file with :func:`load_from_local`; the
named schemes keep MMEngine's name tables. (``pavi://`` and
``s3://``/``petrel://`` already load with ``torch.load``'s safe default.)
"""
import hashlib
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import Callable, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner import checkpoint as mmengine_checkpoint

from mmkw.cnn import note_checkpoint_source

__all__ = [
    'CheckpointLoadError', 'load_from_local', 'load_from_http',
    'safe_checkpoint_globals', 'url_cache_path'
]

_NUMERIC_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8',
                   'uint16', 'uint32', 'uint64', 'float16', 'float32',
                   'float64')

# HistoryBuffer's built-in statistics. MMEngine pickles every registered
# statistics method with the buffer, and a pickle can only name
# ``HistoryBuffer.min`` as ``getattr(HistoryBuffer, 'min')``, which no
# weights_only allow-list should admit. The built-in ones are recreated by
# ``HistoryBuffer`` itself, so mmkw leaves them out of the pickle:
# ``import mmkw`` puts the two functions below in place of HistoryBuffer's
# ``__getstate__`` and ``__setstate__`` (see mmkw.compat).
_BUILTIN_STATISTICS = ('min', 'max', 'current', 'mean')
_mmengine_getstate = HistoryBuffer.__getstate__
_mmengine_setstate = HistoryBuffer.__setstate__


def _history_buffer_getstate(self) -> dict:
    """``HistoryBuffer.__getstate__`` without the built-in statistics."""
    state = dict(_mmengine_getstate(self))
    state['statistics_methods'] = {
        name: method
        for name, method in state.get('statistics_methods', {}).items()
        if not (name in _BUILTIN_STATISTICS
                and method is getattr(HistoryBuffer, name))
    }
    return state


def _history_buffer_setstate(self, state: dict) -> None:
    """``HistoryBuffer.__setstate__`` that also restores the built-ins."""
    _mmengine_setstate(self, state)
    self._set_default_statistics()


def safe_checkpoint_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The globals allowed in a checkpoint on top of PyTorch's defaults.

    Every entry is needed by checkpoints that MMEngine's ``Runner`` writes
    for MMPretrain and MMDetection models:

    - ``HistoryBuffer``: the logged scalars of ``message_hub``;
    - nothing reached through ``getattr``: ``import mmkw`` makes
      ``HistoryBuffer`` pickle without its built-in statistics methods (see
      ``_history_buffer_getstate``); a file written by MMEngine without
      mmkw still names them through ``getattr`` and is refused with an
      explanation;
    - ``numpy.ndarray``, ``numpy.dtype`` and ``numpy.core.multiarray.
      _reconstruct``: a ``HistoryBuffer`` stores its history as arrays;
    - ``numpy.core.multiarray.scalar``: NumPy scalars in the runtime info
      (``best_score`` of ``save_best``, metrics computed with NumPy);
    - the dtype classes of NumPy's boolean, integer and floating types
      (``numpy.dtypes.Float64DType``, ...): NumPy 2 restores a dtype's
      state on an instance of its class. Object, string and structured
      dtypes are not listed.

    NumPy 2 pickles ``numpy._core.multiarray``, NumPy 1 ``numpy.core.
    multiarray``; both names are listed so files from either load.

    Returns:
        list: Entries for :func:`torch.serialization.safe_globals`.
    """
    multiarray = np._core.multiarray if hasattr(
        np, '_core') else np.core.multiarray
    entries: list = [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
    ]
    entries += sorted({type(np.dtype(t))
                       for t in _NUMERIC_DTYPES},
                      key=lambda cls: cls.__name__)
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries.append((multiarray._reconstruct, f'{module}._reconstruct'))
        entries.append((multiarray.scalar, f'{module}.scalar'))
    return entries


class CheckpointLoadError(RuntimeError, ValueError):
    """A checkpoint file could not be loaded; the message says which file
    and why."""


def load_from_local(filename: str,
                    map_location=None,
                    extra_globals: Sequence = ()):
    """Load a local checkpoint with ``weights_only=True``.

    Registered as MMEngine's loader for local paths (the ``''`` scheme), so
    ``Runner.resume``, ``load_from`` and ``init_cfg=dict(type='Pretrained')``
    all go through it; the checkpoint converter reads official files with it
    too. A file that does not load is described in one line, the same for
    every loader: the file is empty; a text file; not a PyTorch checkpoint;
    a truncated or damaged checkpoint; or a checkpoint holding an object
    outside the allow-list (named), the only case where loading the file
    with ``weights_only=False`` is mentioned, for a file the user trusts.

    Args:
        filename (str): Path of the checkpoint (``~`` is expanded).
        map_location (str | torch.device | Callable, optional): Same as
            :func:`torch.load`. Defaults to None.
        extra_globals (Sequence): Globals allowed on top of
            :func:`safe_checkpoint_globals` (the converter allows
            ``argparse.Namespace``). Defaults to ().

    Returns:
        dict | OrderedDict: The loaded checkpoint.

    Raises:
        FileNotFoundError: If ``filename`` is not a file.
        CheckpointLoadError: If the file is not a readable PyTorch checkpoint
            or holds objects outside the allow-list.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename!r} not found')
    what = f'cannot load checkpoint {filename!r}'
    if osp.getsize(filename) == 0:
        raise CheckpointLoadError(
            f'{what}: the file is empty, not a checkpoint')
    allowed = [*safe_checkpoint_globals(), *extra_globals]
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        refused = _refused_globals(filename, e, allowed)
        if 'GLOBAL builtins.getattr' in refused:
            raise CheckpointLoadError(
                f'{what}: it names objects through getattr (MMEngine '
                f'without mmkw pickles HistoryBuffer statistics that way), '
                f'which mmkw never allows. If you trust the file, load it '
                f'once with torch.load(..., weights_only=False) in a process '
                f'that imported mmkw and torch.save it again; it then loads '
                f'here.') from None
        if refused:
            raise CheckpointLoadError(
                f'{what}: it holds {", ".join(refused)}'
                f', which is not a tensor, a container or an object MMEngine '
                f'checkpoints hold (mmkw.engine.safe_checkpoint_globals), and '
                f'is refused unread. Official KernelWarehouse checkpoints go '
                f'through tools/model_converters/kw_official_to_mmkw.py; only '
                f'for a file you trust, load it with torch.load(..., '
                f'weights_only=False) and save its plain state dict.'
            ) from None
        raise CheckpointLoadError(f'{what}: {_what_file(filename)}') from None
    except Exception:  # torch.load's many ways to reject a damaged file
        raise CheckpointLoadError(f'{what}: {_what_file(filename)}') from None
    note_checkpoint_source(filename, _state_dict_keys(checkpoint))
    return checkpoint


def _state_dict_keys(checkpoint) -> Optional[List[str]]:
    """The keys of a checkpoint's state dict (MMEngine's ``state_dict``,
    the official code's ``model``, or the checkpoint itself)."""
    if not isinstance(checkpoint, dict):
        return None
    for entry in ('state_dict', 'model'):
        if isinstance(checkpoint.get(entry), dict):
            checkpoint = checkpoint[entry]
            break
    keys = list(checkpoint)
    return keys if all(isinstance(k, str) for k in keys) else None


def _refused_globals(filename: str, error: Exception,
                     allowed: Sequence) -> List[str]:
    """The objects a ``weights_only`` load refused, as ``'GLOBAL
    module.name'``: named in PyTorch's message, or listed from a zip
    checkpoint without unpickling it (those outside ``allowed``, the
    allow-list of the load)."""
    text = str(error)
    names = re.findall(r'GLOBAL ([\w.]+)', text) + re.findall(
        r"got <class '([\w.]+)'>", text)
    if not names and zipfile.is_zipfile(filename):
        try:
            allowed_names = {
                f'{g.__module__}.{g.__qualname__}'
                if not isinstance(g, tuple) else g[1]
                for g in allowed
            }
            names = [
                g for g in
                torch.serialization.get_unsafe_globals_in_checkpoint(filename)
                if g not in allowed_names
            ]
        except Exception:
            names = []
    return [f'GLOBAL {name}' for name in dict.fromkeys(names)]


def _what_file(filename: str) -> str:
    """What a file that ``torch.load`` cannot read is."""
    with open(filename, 'rb') as f:
        head = f.read(4096)
    if head.startswith(b'PK\x03\x04'):
        return ('a truncated or damaged PyTorch checkpoint (its zip archive '
                'is incomplete); download it again')
    if head[:1] == b'\x80':
        return 'a truncated or damaged pickle; download it again'
    try:
        head.decode('utf-8')
        return 'a text file, not a PyTorch checkpoint'
    except UnicodeDecodeError:
        return ('not a PyTorch checkpoint (neither a zip archive nor a '
                'pickle)')


#: A SHA-256 prefix in a file name (``name-<hash>.pth``), as torch hub and
#: OpenMMLab name their released weights; at least 8 hex digits.
_HASH_IN_NAME = re.compile(r'-([a-f0-9]{8,})\.')


def url_cache_path(url: str, model_dir: Optional[str] = None) -> str:
    """Where :func:`load_from_http` caches ``url``: the file name behind a
    hash of the whole URL, so two URLs with one file name never share a
    cached file.

    Args:
        url (str): ``http(s)://`` URL.
        model_dir (str, optional): Cache directory. Defaults to
            ``<torch.hub.get_dir()>/checkpoints``.
    """
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    return osp.join(model_dir, f'{key}-{osp.basename(urlparse(url).path)}')


def load_from_http(filename: str,
                   map_location=None,
                   model_dir: Optional[str] = None,
                   progress: bool = os.isatty(0)):
    """Download a checkpoint (once, into the cache) and load it safely.

    Same contract as MMEngine's ``load_from_http``; the file is read by
    :func:`load_from_local` (``weights_only=True`` with mmkw's allow-list).
    The cache is keyed by the whole URL (:func:`url_cache_path`); a file
    name that carries a SHA-256 prefix (``name-<hash>.pth``) is checked
    against it on download, as ``torch.hub``'s ``check_hash`` does; a
    download that fails the check or is refused is removed from the cache.

    Args:
        filename (str): ``http://`` or ``https://`` URL.
        map_location: Same as :func:`torch.load`. Defaults to None.
        model_dir (str, optional): Cache directory. Defaults to
            ``<torch.hub.get_dir()>/checkpoints``.
        progress (bool): Show a download progress bar.

    Raises:
        CheckpointLoadError: If the downloaded file fails its hash or holds
            anything outside the allow-list (the message names the URL).
    """
    cached = url_cache_path(filename, model_dir)
    rank, world_size = get_dist_info()
    if rank == 0 and not osp.isfile(cached):
        os.makedirs(osp.dirname(cached), exist_ok=True)
        print_log(f'Downloading {filename} to {cached}', logger='current')
        match = _HASH_IN_NAME.search(osp.basename(urlparse(filename).path))
        try:
            torch.hub.download_url_to_file(
                filename,
                cached,
                hash_prefix=match.group(1) if match else None,
                progress=progress)
        except RuntimeError as e:
            if osp.exists(cached):
                os.remove(cached)
            raise CheckpointLoadError(
                f'checkpoint {filename!r}: {e}; the download is not '
                f'kept') from None
    if world_size > 1:
        torch.distributed.barrier()
    try:
        checkpoint = load_from_local(cached, map_location=map_location)
    except CheckpointLoadError as e:
        if rank == 0 and osp.exists(cached):
            os.remove(cached)
        raise CheckpointLoadError(
            f'checkpoint {filename!r} (downloaded to {cached}, now removed): '
            f'{e}') from None
    note_checkpoint_source(filename, _state_dict_keys(checkpoint))
    return checkpoint


def _model_url(filename: str, table: dict) -> str:
    """The entry of ``table`` that ``SCHEME://NAME`` names."""
    name = filename.split('://', 1)[1]
    if name not in table:
        raise ValueError(
            f'unknown checkpoint {filename!r}: {name!r} is not one of the '
            f'{len(table)} names MMEngine knows for this scheme (e.g. '
            f'{sorted(table)[:3]})')
    return table[name]


def load_from_torchvision(filename: str, map_location=None):
    """``torchvision://NAME`` (or ``modelzoo://NAME``) through
    :func:`load_from_http`, with MMEngine's name table."""
    url = _model_url(filename, mmengine_checkpoint.get_torchvision_models())
    return load_from_http(url, map_location=map_location)


def load_from_openmmlab(filename: str, map_location=None):
    """``open-mmlab://NAME`` (or ``openmmlab://NAME``) through
    :func:`load_from_http` or :func:`load_from_local`, with MMEngine's name
    tables (deprecated names renamed as MMEngine does)."""
    scheme, name = filename.split('://', 1)
    name = mmengine_checkpoint.get_deprecated_model_names().get(name, name)
    url = _model_url(f'{scheme}://{name}',
                     mmengine_checkpoint.get_external_models())
    if url.startswith(('http://', 'https://')):
        return load_from_http(url, map_location=map_location)
    return load_from_local(
        osp.join(mmengine_checkpoint._get_mmengine_home(), url),
        map_location=map_location)


def load_from_mmcls(filename: str, map_location=None):
    """``mmcls://NAME`` through :func:`load_from_http`, with MMEngine's name
    table and key renaming."""
    url = _model_url(filename, mmengine_checkpoint.get_mmcls_models())
    return mmengine_checkpoint._process_mmcls_checkpoint(
        load_from_http(url, map_location=map_location))
