"""The shipped configs: one YAML per task a user runs and per recipe of a shipped optimizer.

``python train.py --task NAME`` reads ``NAME.yaml`` from here (installed as ``l2l_torch.configs``).
"""
