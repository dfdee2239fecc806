"""The KernelWarehouse core imports and runs with PyTorch alone (the GPU
benchmark image has torch but no OpenMMLab packages)."""
import subprocess
import sys
import textwrap

from helpers import REPO_ROOT

SCRIPT = textwrap.dedent('''
    import sys
    for name in ('mmengine', 'mmcv', 'mmdet', 'mmpretrain'):
        sys.modules[name] = None  # "not installed"
    import torch
    import torch.nn as nn
    import mmkw
    from mmkw.cnn import KWConv2d, KWLinear, WarehouseManager

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = KWConv2d(8, 16, 3, padding=1, warehouse='w')
            self.conv2 = KWConv2d(16, 16, 3, padding=1, warehouse='w')
            self.fc = KWLinear(16, 10, warehouse='fc')
            self.warehouse_manager = WarehouseManager()
            self.warehouse_manager.declare('w')
            self.warehouse_manager.declare('fc')
            self.plan = self.warehouse_manager.bind(self)

        def forward(self, x):
            x = self.conv2(self.conv1(x))
            return self.fc(x.mean((2, 3)))

    net = Net().eval()
    assert mmkw.set_temperature(net, 0.5) == 3
    out = net(torch.randn(2, 8, 8, 8))
    assert out.shape == (2, 10), out.shape
    assert 'mmkw.models' not in sys.modules
    assert 'mmkw.engine' not in sys.modules
    print(net.plan)
''')


def test_core_runs_without_openmmlab():
    result = subprocess.run([sys.executable, '-c', SCRIPT],
                            cwd=REPO_ROOT,
                            capture_output=True,
                            text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'warehouse' in result.stdout and 'total' in result.stdout
