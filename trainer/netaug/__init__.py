"""NetAug (Network Augmentation, Cai et al. ICLR 2022) for the zoo models.

- ``trainer.netaug.layers``: dynamic conv / depthwise conv / BN / linear / SE layers;
- ``trainer.netaug.supernet``: ``build_supernet(zoo_model, width_list, expand_list)`` derives the
  augmented super-net of any zoo model, with sub-net sampling, channel sorting, BN
  re-calibration and zero-overhead export to the plain zoo model;
- ``trainer.netaug.strategy``: ``NetAugStrategy`` for the training loop (``trainer.strategy``).

Kept import-light: import the submodules explicitly.
"""
