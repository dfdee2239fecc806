# KW 1x DeiT-Tiny (paper Table 11): value projections and MLPs draw from
# warehouses shared by groups of 6 blocks (KWVisionTransformer; query, key
# and output projections stay static). MMPretrain's DeiT-Tiny recipe
# (AdamW 300 epochs, batch 4x256, lr 5e-4 x batch/512, wd 0.05, RandAugment,
# mixup, cutmix, random erasing, label smoothing) plus the temperature
# schedule over 20 epochs.
_base_ = 'mmpretrain::deit/deit-tiny_4xb256_in1k.py'
custom_imports = dict(imports=['mmkw'], allow_failed_imports=False)

model = dict(
    backbone=dict(type='KWVisionTransformer', budget=1.0,
                  blocks_per_warehouse=6))

custom_hooks = [dict(type='KWTemperatureHook', epochs=20)]
