"""mmkw's model index: every config has an entry, every entry's numbers are
what the analysis tools compute, and MMPretrain finds the classifiers by
name."""
import glob
import os.path as osp

import pytest
import torch
from helpers import REPO_ROOT
from mmengine.fileio import load

import mmkw  # registers the index with MMPretrain's ModelHub
from mmkw.analysis import count_complexity
from mmkw.apis import config_path, list_model_names, model_index_root
from mmkw.engine import load_config

pytestmark = pytest.mark.usefixtures('one_thread')


def _entries():
    index = load(str(REPO_ROOT / 'model-index.yml'))
    for metafile in index['Import']:
        for entry in load(str(REPO_ROOT / metafile))['Models']:
            yield entry


ENTRIES = {entry['Name']: entry for entry in _entries()}
CONFIGS = sorted(
    osp.relpath(p, REPO_ROOT) for p in glob.glob(
        str(REPO_ROOT / 'configs' / '**' / '*.py'), recursive=True)
    if '_base_' not in p)


def test_every_config_has_one_entry_and_every_entry_a_config():
    by_config = {entry['Config']: name for name, entry in ENTRIES.items()}
    assert len(by_config) == len(ENTRIES)  # no config listed twice
    assert sorted(by_config) == CONFIGS
    for name, entry in ENTRIES.items():
        assert osp.splitext(osp.basename(entry['Config']))[0] == name


def test_classifiers_by_name_in_mmpretrain():
    import mmpretrain
    classifiers = sorted(
        name for name, entry in ENTRIES.items()
        if entry['Results'][0]['Task'] == 'Image Classification')
    assert sorted(mmpretrain.list_models('*kw*')) == classifiers
    assert sorted(list_model_names('Image Classification')) == classifiers


def test_get_model_and_inferencer_by_name(tmp_path):
    import mmpretrain
    from mmpretrain import ImageClassificationInferencer
    name = 'kw1x-mobilenet-v2-050_8xb32_in1k'
    source = mmpretrain.get_model(name)
    mmkw.set_temperature(source, 0.0)
    ckpt = tmp_path / 'converted.pth'
    torch.save({'state_dict': source.state_dict()}, ckpt)
    model = mmpretrain.get_model(name, pretrained=str(ckpt))
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    # As in a fresh process: other tests here leave MMDetection's scope on.
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        inferencer = ImageClassificationInferencer(name, pretrained=str(ckpt))
        image = (torch.rand(64, 64, 3) * 255).to(torch.uint8).numpy()
        result = inferencer(image)[0]
    assert 0 <= result['pred_label'] < 1000


def test_detectors_have_config_paths():
    path = config_path('mask-rcnn_kw-r50_1x_coco')
    assert path == osp.join(model_index_root(), 'configs',
                            'mask-rcnn_kw-r50_1x_coco.py')
    with pytest.raises(ValueError, match='no model'):
        config_path('mask-rcnn_kw-r51_1x_coco')


@pytest.mark.parametrize('name', sorted(ENTRIES))
def test_entry_numbers_are_computed_ones(name, load_tool):
    """Parameters as kw_plan.py reports them, FLOPs (classifiers, 224x224)
    as get_flops.py counts them: the metafiles cannot drift."""
    entry = ENTRIES[name]
    path = str(REPO_ROOT / entry['Config'])
    report = load_tool('analysis_tools/kw_plan').main([path])
    params = entry['Metadata']['Parameters']
    total = [line for line in report.splitlines()
             if line.startswith('total')][-1]  # KW vs plain, whole model
    assert f' {params:,} ' in total, (total, params)
    if 'FLOPs' in entry['Metadata']:
        cfg = load_config(path)
        features = load_tool('analysis_tools/get_flops').build_feature_model(
            cfg)
        flops = count_complexity(features, (3, 224, 224))['flops']
        assert flops == entry['Metadata']['FLOPs']
    else:
        assert load_config(path).default_scope == 'mmdet'
