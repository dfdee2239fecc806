"""Run an mmkw tool from an installed package: ``python -m mmkw TOOL ...``.

The wheel carries the tools and configs in ``mmkw/.mim`` as MMPretrain's and
MMDetection's do, which is what ``mim train mmkw CONFIG`` runs (OpenMMLab's
``openmim``, installed separately: its own pins conflict with this stack's).
This entry point needs nothing but mmkw::

    python -m mmkw train mask-rcnn_kw-r50_1x_coco [--work-dir DIR] ...
    python -m mmkw test kw1x-resnet50_8xb32_in1k CHECKPOINT
    python -m mmkw analysis_tools/kw_plan kw1x-resnet18_8xb32_in1k
    python -m mmkw list

``TOOL`` is a script under ``tools/`` without ``.py``; a config may be given
by path, by model name (``mmkw.apis.list_model_names()``) or as
``mmkw::<path>``.
"""
import os.path as osp
import runpy
import sys
from typing import List, Optional

__all__ = ['main', 'tools_dir', 'resolve_config']


def tools_dir() -> str:
    """mmkw's ``tools/``: ``mmkw/.mim/tools`` of an installed package, else
    the checkout's."""
    package = osp.dirname(osp.abspath(__file__))
    for candidate in (osp.join(package, '.mim', 'tools'),
                      osp.join(osp.dirname(package), 'tools')):
        if osp.isdir(candidate):
            return candidate
    raise FileNotFoundError(f'no tools/ beside {package}')


def resolve_config(arg: str) -> str:
    """``arg`` itself if it is a file, else the mmkw config it names (a
    model name, a config file name or ``mmkw::<path>``)."""
    if osp.isfile(arg) or arg.startswith('-'):
        return arg
    from mmkw.apis import config_path
    from mmkw_config_hook import PREFIX, mmkw_config_path
    if arg.startswith(PREFIX):
        return mmkw_config_path(arg[len(PREFIX):])
    name = arg[:-3] if arg.endswith('.py') else arg
    try:
        return config_path(osp.basename(name))
    except ValueError:
        return arg  # the tool says what is missing


def main(argv: Optional[List[str]] = None) -> None:
    """Run ``tools/<TOOL>.py`` with the rest of ``argv``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(__doc__.strip())
        return
    if argv[0] == 'list':
        from mmkw.apis import list_model_names
        print('\n'.join(sorted(list_model_names())))
        return
    tool, args = argv[0], argv[1:]
    script = osp.join(tools_dir(), f'{tool}.py')
    if not osp.isfile(script):
        raise SystemExit(f'error: mmkw has no tool {tool!r} ({script} not '
                         f'found); tools: train, test, '
                         f'analysis_tools/kw_plan, analysis_tools/get_flops, '
                         f'analysis_tools/benchmark, '
                         f'analysis_tools/vis_attention, '
                         f'deployment/pytorch2onnx, '
                         f'model_converters/kw_official_to_mmkw')
    if args and not args[0].startswith('-'):
        args[0] = resolve_config(args[0])
    sys.argv = [script] + args
    runpy.run_path(script, run_name='__main__')


if __name__ == '__main__':
    main()
