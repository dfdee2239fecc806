# KernelWarehouse ResNet50, budget 1/2, on ImageNet-1k with the paper's
# traditional recipe (SGD 100 epochs, batch 8x32, temperature over 10 epochs).
_base_ = './kw1x-resnet50_8xb32_in1k.py'

model = dict(
    backbone=dict(
        budget=0.5,
        # The official b=1/2 ResNet50 maps other layers' cells through a
        # small basis in the attention (kernelwarehouse.md 2.2).
        nonlocal_basis_ratio=0.0625))
