"""drtl: few-shot real-world super-resolution by Distortion-Relation guided Transfer Learning.

The method as implemented: docs/method.md; the architecture (one plan rendered by every orchestrator,
one stage contract behind one wrapper): README.md and docs/pipeline.md of this repository.

Conventions:
- numpy images are HWC RGB, uint8 or float in [0, 1];
- torch tensors are NCHW float32 in [0, 1];
- randomness comes only from generators passed in (numpy Generator / torch Generator).
"""

__version__ = "0.1.0"
