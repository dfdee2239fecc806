# KernelWarehouse ResNet18, budget 1/2, on ImageNet-1k with the paper's
# traditional recipe (SGD 100 epochs, batch 8x32, temperature over 10 epochs).
_base_ = './kw1x-resnet18_8xb32_in1k.py'

model = dict(backbone=dict(budget=0.5))
