# YOLOX-S (MMDetection's; CSPDarknet, a backbone mmkw did not write) with a
# KernelWarehouse backbone made by `KWConverted` with the paper's stage rule
# (one warehouse per resolution, a downsampling conv joins the previous
# stage, the Focus stem conv stays plain). YOLOX trains from scratch, so the
# attention starts from the initial assignment (temperature 1) and
# KWTemperatureHook lowers it to 0 over the first 30 of 300 epochs (the
# 10% of the paper's ImageNet recipes); everything else is MMDetection's
# YOLOX-S recipe. The paper reports no YOLOX numbers.
_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'
custom_imports = dict(imports=['mmkw'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='KWConverted',
        backbone=dict(
            type='mmdet.CSPDarknet',
            deepen_factor=0.33,
            widen_factor=0.5,
            out_indices=(2, 3, 4),
            use_depthwise=False,
            spp_kernal_sizes=(5, 9, 13),
            norm_cfg=dict(type='BN', momentum=0.03, eps=0.001),
            act_cfg=dict(type='Swish')),
        budget=1.0,
        rule='stage',
        input_shape=(3, 256, 256)))

# MMDetection's hooks keep the scope the base list gave them, so that the
# list builds whichever package inherits this config.
custom_hooks = [
    dict(
        _scope_='mmdet',
        type='YOLOXModeSwitchHook',
        num_last_epochs=15,
        priority=48),
    dict(_scope_='mmdet', type='SyncNormHook', priority=48),
    dict(
        _scope_='mmdet',
        type='EMAHook',
        ema_type='ExpMomentumEMA',
        momentum=0.0001,
        update_buffers=True,
        priority=49),
    dict(type='KWTemperatureHook', epochs=30)
]
