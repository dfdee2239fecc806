# MMPretrain's default runtime, with mmkw registered.
_base_ = ['mmpretrain::_base_/default_runtime.py']

custom_imports = dict(imports=['mmkw'], allow_failed_imports=False)
