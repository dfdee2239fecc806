# KW 3/4x DeiT-Small (paper Table 11): value projections and MLPs draw from
# warehouses shared by groups of 6 blocks (KWVisionTransformer; query, key
# and output projections stay static). MMPretrain's DeiT-Small recipe
# (AdamW 300 epochs, batch 4x256, lr 5e-4 x batch/512, wd 0.05, RandAugment,
# mixup, cutmix, random erasing, label smoothing) plus the temperature
# schedule over 20 epochs. 3/4x: the value warehouses at b = 1, the MLP
# warehouses at b = 1/2 (the split that gives the paper's 19.23M; see README).
_base_ = 'mmpretrain::deit/deit-small_4xb256_in1k.py'
custom_imports = dict(imports=['mmkw'], allow_failed_imports=False)

model = dict(
    backbone=dict(type='KWVisionTransformer', budget=dict(value=1.0, mlp=0.5),
                  blocks_per_warehouse=6))

custom_hooks = [dict(type='KWTemperatureHook', epochs=20)]
