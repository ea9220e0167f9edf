"""drtl: few-shot real-world super-resolution by Distortion-Relation guided Transfer Learning.

Conventions (see ../shared/DESIGN.md and docs/):
- numpy images are HWC RGB, uint8 or float in [0, 1];
- torch tensors are NCHW float32 in [0, 1];
- randomness comes only from generators passed in (numpy Generator / torch Generator).
"""

__version__ = "0.1.0"
