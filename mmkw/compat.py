"""Every change ``import mmkw`` makes to the stack it runs on, in one place.

mmkw runs on a pinned stack (``requirements/``: MMEngine 0.10.7, PyTorch
2.13, setuptools < 82, ...) and fixes a few of its behaviours by replacing
upstream objects. :data:`STACK_PATCHES` lists every such change: what it
replaces, which upstream versions it is written for, why, and which tests
exercise it. :func:`apply_stack_patches`, called by ``import mmkw``, is the
only code in mmkw that writes into another package at import time; the
replacements themselves live with their subject (:mod:`mmkw.engine.checkpoint`,
:mod:`mmkw.engine.checkpoint_saving`, :mod:`mmkw.engine.efficient_conv_bn`,
``mmkw_config_hook.py``).

Each patch is applied once per process (a second call changes nothing) and
only when the packages it patches can be imported, so ``import mmkw`` with
PyTorch alone applies none of MMEngine's. A patch whose upstream package is
installed in a version outside the range it is written for is still applied,
with a :class:`StackVersionWarning`: upstream may have fixed the behaviour or
changed the object. :func:`markdown_table` renders the table of
``docs/compatibility.md``.

This module imports only the standard library at import time (``packaging``
when it checks versions), so it is importable without PyTorch or MMEngine.
"""
import ast
import importlib
import importlib.metadata
import importlib.util
import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = [
    'StackPatch', 'StackVersionWarning', 'STACK_PATCHES',
    'apply_stack_patches', 'applied_patches', 'resolve', 'markdown_table'
]

#: ``module:attribute.path`` or ``module:attribute.path[key]``.
_TARGET = re.compile(r'([\w.]+):([\w.]+)(?:\[(.+)\])?')


class StackVersionWarning(UserWarning):
    """A stack patch is applied to an upstream version outside the range it
    is written for."""


def _parse(target: str) -> Tuple[str, List[str], Any]:
    match = _TARGET.fullmatch(target)
    if match is None:
        raise ValueError(f'{target!r} is not "module:attribute.path" or '
                         f'"module:attribute.path[key]"')
    module, path, key = match.groups()
    return module, path.split('.'), (None
                                     if key is None else ast.literal_eval(key))


def resolve(target: str) -> Any:
    """The object that ``target`` names, importing its module.

    Args:
        target (str): ``'module:attribute.path'`` (e.g.
            ``'mmengine.runner.runner:save_checkpoint'``), or with a
            trailing ``[key]`` for an entry of a dict (e.g.
            ``"mmengine.runner.checkpoint:CheckpointLoader._schemes['']"``).
    """
    module, path, key = _parse(target)
    obj = importlib.import_module(module)
    for name in path:
        obj = getattr(obj, name)
    return obj if key is None else obj[key]


@dataclass(frozen=True)
class StackPatch:
    """One change ``import mmkw`` makes to an upstream package.

    Attributes:
        name (str): Short name of the change.
        replaces (tuple[str]): The upstream objects replaced, as
            :func:`resolve` names them.
        by (tuple[str]): The mmkw object put in place of each of
            ``replaces``, in order; empty when ``install`` does the work.
        upstream (tuple[str]): The versions the change is written for, as
            requirements (``'mmengine<=0.10.7'``, ``'torch>=2.6'``) of
            distributions named as their modules; the change is applied only
            when each of these packages is importable.
        why (str): What upstream does there, in one sentence.
        tests (tuple[str]): The tests that exercise the patched behaviour
            through the upstream API (``path::test``).
        install (Callable, optional): Applies a change that is not one
            object put in place of another (given the patch). Defaults to
            putting each of ``by`` in place of its ``replaces``.
        in_place (Callable, optional): Whether an ``install`` change is in
            place. Defaults to comparing ``replaces`` with ``by``.
    """
    name: str
    replaces: Tuple[str, ...]
    by: Tuple[str, ...]
    upstream: Tuple[str, ...]
    why: str
    tests: Tuple[str, ...]
    install: Optional[Callable[['StackPatch'], None]] = None
    in_place: Optional[Callable[['StackPatch'], bool]] = None

    def __post_init__(self):
        if self.install is None and len(self.by) != len(self.replaces):
            raise ValueError(f'{self.name}: one replacement per target')

    @property
    def packages(self) -> Tuple[str, ...]:
        """The upstream packages that ``upstream`` names."""
        return tuple(
            re.match(r'[\w-]+', requirement).group().replace('-', '_')
            for requirement in self.upstream)

    def available(self) -> bool:
        """Whether every package the change is for can be imported."""
        return all(
            importlib.util.find_spec(package) is not None
            for package in self.packages)

    def version_mismatches(self) -> List[str]:
        """The installed upstream versions outside ``upstream``, described
        (empty when all are inside, or ``packaging`` is not there)."""
        try:
            from packaging.requirements import Requirement
            from packaging.version import InvalidVersion, Version
        except ImportError:
            return []
        found = []
        for text in self.upstream:
            requirement = Requirement(text)
            try:
                installed = importlib.metadata.version(requirement.name)
                inside = requirement.specifier.contains(
                    Version(installed), prereleases=True)
            except (importlib.metadata.PackageNotFoundError, InvalidVersion):
                continue
            if not inside:
                found.append(f'{requirement.name} {installed} is installed')
        return found

    def apply(self) -> None:
        """Make the change (again: applying it twice changes nothing)."""
        if self.install is not None:
            self.install(self)
            return
        for target, replacement in zip(self.replaces, self.by):
            module, path, key = _parse(target)
            if key is not None:
                raise ValueError(f'{self.name}: {target} needs an install')
            owner = resolve(f'{module}:{".".join(path[:-1])}') \
                if len(path) > 1 else importlib.import_module(module)
            setattr(owner, path[-1], resolve(replacement))

    def is_applied(self) -> bool:
        """Whether the change is in place now."""
        if self.in_place is not None:
            return self.in_place(self)
        return all(
            resolve(target) is resolve(replacement)
            for target, replacement in zip(self.replaces, self.by))


# -- changes that are not one object put in place of another ------------------

_PKG_RESOURCES_MESSAGE = 'pkg_resources is deprecated as an API'


def _ignore_pkg_resources_warning(patch: StackPatch) -> None:
    # Before anything imports mmengine or mmcv, which import pkg_resources;
    # once (filterwarnings would move it before filters added since).
    if _pkg_resources_warning_ignored(patch):
        return
    warnings.filterwarnings(
        'ignore', message=_PKG_RESOURCES_MESSAGE, category=UserWarning)


def _pkg_resources_warning_ignored(patch: StackPatch) -> bool:
    return any(action == 'ignore' and message is not None
               and message.pattern == _PKG_RESOURCES_MESSAGE
               for action, message, *_ in warnings.filters)


def _install_config_hook(patch: StackPatch) -> None:
    import mmkw_config_hook
    mmkw_config_hook.install()


def _config_hook_installed(patch: StackPatch) -> bool:
    return getattr(resolve(patch.replaces[0]), '_mmkw', False)


def _register_checkpoint_loaders(patch: StackPatch) -> None:
    # MMEngine's own API: it keeps the prefixes sorted, longest first.
    from mmengine.runner import CheckpointLoader
    for target, replacement in zip(patch.replaces, patch.by):
        prefix = _parse(target)[2]
        CheckpointLoader.register_scheme(
            prefixes=prefix, loader=resolve(replacement), force=True)


def _schemes(*prefixes: str) -> Tuple[str, ...]:
    return tuple(f'mmengine.runner.checkpoint:CheckpointLoader._schemes'
                 f'[{prefix!r}]' for prefix in prefixes)


_CHECKPOINT = 'mmkw.engine.checkpoint'
_SAVING = 'mmkw.engine.checkpoint_saving'
_CONV_BN = 'mmkw.engine.efficient_conv_bn'
_HISTORY_BUFFER = 'mmengine.logging.history_buffer:HistoryBuffer'
_TURN_ON = 'turn_on_efficient_conv_bn_eval'

#: Every change ``import mmkw`` makes to the stack, in the order it is
#: applied (the warnings filter first, before MMEngine is imported).
STACK_PATCHES: Tuple[StackPatch, ...] = (
    StackPatch(
        name='pkg-resources-warning',
        replaces=('warnings:filters', ),
        by=(),
        upstream=('setuptools<82', ),
        why='mmengine and mmcv import pkg_resources, which warns on every '
        'import that it is deprecated; mmkw ignores that one message.',
        tests=('tests/test_tools/test_first_hour.py::'
               'test_no_pkg_resources_warnings_on_the_console',
               'tests/test_compat.py::'
               'test_import_changes_exactly_the_listed_objects'),
        install=_ignore_pkg_resources_warning,
        in_place=_pkg_resources_warning_ignored),
    StackPatch(
        name='mmkw-config-bases',
        replaces=('mmengine.config.config:Config._get_cfg_path', ),
        by=(),
        upstream=('mmengine<=0.10.7', ),
        why='Config resolves package::path bases only for the packages of '
        'its own table, before custom_imports run; mmkw_config_hook adds '
        'mmkw:: (also installed at start-up by the wheel\'s .pth).',
        tests=('tests/test_compat.py::test_mmkw_config_base_resolves',
               'tests/test_package.py::'
               'test_user_config_inherits_an_mmkw_config'),
        install=_install_config_hook,
        in_place=_config_hook_installed),
    StackPatch(
        name='history-buffer-pickle',
        replaces=(f'{_HISTORY_BUFFER}.__getstate__',
                  f'{_HISTORY_BUFFER}.__setstate__'),
        by=(f'{_CHECKPOINT}:_history_buffer_getstate',
            f'{_CHECKPOINT}:_history_buffer_setstate'),
        upstream=('mmengine<=0.10.7', 'torch>=2.6'),
        why='HistoryBuffer pickles its built-in statistics methods through '
        'getattr, which no weights_only load should allow; mmkw leaves them '
        'out of the pickle and recreates them on load.',
        tests=('tests/test_engine/test_checkpoint.py::'
               'test_history_buffer_round_trip_keeps_statistics',
               'tests/test_engine/test_checkpoint.py::'
               'test_mmengine_pickled_history_buffer_refused_with_advice')),
    StackPatch(
        name='local-checkpoint-loader',
        replaces=_schemes(''),
        by=(f'{_CHECKPOINT}:load_from_local', ),
        upstream=('mmengine<=0.10.7', 'torch>=2.6'),
        why='MMEngine calls torch.load without weights_only, which torch '
        '>= 2.6 defaults to True and which then refuses MMEngine\'s own '
        'checkpoints; mmkw loads with weights_only=True and an allow-list '
        '(safe_checkpoint_globals).',
        tests=tuple('tests/test_engine/test_checkpoint.py::' + name
                    for name in ('test_resume', 'test_load_from_round_trip',
                                 'test_init_cfg_pretrained_round_trip',
                                 'test_disallowed_objects_refused')),
        install=_register_checkpoint_loaders),
    StackPatch(
        name='url-checkpoint-loaders',
        replaces=_schemes('http://', 'https://', 'modelzoo://',
                          'torchvision://', 'open-mmlab://', 'openmmlab://',
                          'mmcls://'),
        by=(f'{_CHECKPOINT}:load_from_http', f'{_CHECKPOINT}:load_from_http',
            f'{_CHECKPOINT}:load_from_torchvision',
            f'{_CHECKPOINT}:load_from_torchvision',
            f'{_CHECKPOINT}:load_from_openmmlab',
            f'{_CHECKPOINT}:load_from_openmmlab',
            f'{_CHECKPOINT}:load_from_mmcls'),
        upstream=('mmengine<=0.10.7', ),
        why='MMEngine loads a checkpoint named by URL with '
        'torch.hub.load_state_dict_from_url, whose weights_only defaults to '
        'False; mmkw downloads it (cache keyed by the whole URL, hash in the '
        'name checked) and loads it like a local file.',
        tests=('tests/test_engine/test_url_checkpoints.py::'
               'test_init_cfg_pretrained_refuses_malicious_url',
               'tests/test_engine/test_url_checkpoints.py::'
               'test_load_from_and_resume_refuse_malicious_url',
               'tests/test_engine/test_url_checkpoints.py::'
               'test_named_schemes_refuse_malicious_url'),
        install=_register_checkpoint_loaders),
    StackPatch(
        name='atomic-checkpoint-save',
        replaces=('mmengine.runner.runner:save_checkpoint', ),
        by=(f'{_SAVING}:save_checkpoint', ),
        upstream=('mmengine<=0.10.7', ),
        why='Runner.save_checkpoint writes the file in place, so a kill '
        'leaves it truncated; mmkw writes a local checkpoint to a temporary '
        'file and renames it into place.',
        tests=('tests/test_engine/test_exact_resume.py::'
               'test_kill_while_writing_keeps_the_previous_checkpoint', )),
    StackPatch(
        name='checkpoint-save-then-prune',
        replaces=('mmengine.hooks.checkpoint_hook:CheckpointHook.'
                  '_save_checkpoint_with_step', ),
        by=(f'{_SAVING}:save_then_prune', ),
        upstream=('mmengine<=0.10.7', ),
        why='CheckpointHook deletes the oldest checkpoint (max_keep_ckpts) '
        'before it writes the next; mmkw deletes it after.',
        tests=('tests/test_engine/test_exact_resume.py::'
               'test_kill_while_writing_keeps_the_previous_checkpoint', )),
    StackPatch(
        name='efficient-conv-bn-for-kw',
        replaces=(f'mmengine.runner.runner:{_TURN_ON}',
                  f'mmengine.model.efficient_conv_bn_eval:{_TURN_ON}'),
        by=(f'{_CONV_BN}:{_TURN_ON}', f'{_CONV_BN}:{_TURN_ON}'),
        upstream=('mmengine<=0.10.7', ),
        why='MMEngine\'s efficient_conv_bn_eval pass only knows nn.Conv2d '
        'and raises a bare KeyError on a KW model; mmkw\'s folds KW and '
        'plain conv-BN pairs (plain ones with MMEngine\'s own code).',
        tests=('tests/test_models/test_detection.py::'
               'test_efficient_conv_bn_eval_key_trains_kw_r50_mask_rcnn',
               'tests/test_engine/test_efficient_conv_bn.py::'
               'test_mmengine_public_function_folds_kw_models')),
)

_applied: Dict[str, StackPatch] = {}


def apply_stack_patches() -> List[StackPatch]:
    """Apply each change of :data:`STACK_PATCHES` not applied yet whose
    upstream packages can be imported; ``import mmkw`` calls this.

    A change for an installed version outside its ``upstream`` range is
    applied with a :class:`StackVersionWarning`.

    Returns:
        list[StackPatch]: The changes applied in this process (see
        :func:`applied_patches`).
    """
    for patch in STACK_PATCHES:
        if patch.name in _applied or not patch.available():
            continue
        mismatches = patch.version_mismatches()
        if mismatches:
            warnings.warn(
                f"mmkw's stack patch {patch.name!r} is written for "
                f'{", ".join(patch.upstream)}, but '
                f'{", ".join(mismatches)}: it is applied, but check '
                f'whether it is still needed (mmkw/compat.py). Why: '
                f'{patch.why}',
                StackVersionWarning,
                stacklevel=2)
        patch.apply()
        _applied[patch.name] = patch
    return applied_patches()


def applied_patches() -> List[StackPatch]:
    """The changes of :data:`STACK_PATCHES` applied in this process, in
    order."""
    return [patch for patch in STACK_PATCHES if patch.name in _applied]


def markdown_table() -> str:
    """The table of :data:`STACK_PATCHES` in ``docs/compatibility.md``."""

    def code(items):
        return '<br>'.join(f'`{item}`' for item in items)

    rows = [
        '| Patch | Replaces | Written for | Why | Tested by |',
        '| --- | --- | --- | --- | --- |',
    ]
    for patch in STACK_PATCHES:
        rows.append(f'| `{patch.name}` | {code(patch.replaces)} | '
                    f'{code(patch.upstream)} | {patch.why} | '
                    f'{code(patch.tests)} |')
    return '\n'.join(rows) + '\n'
