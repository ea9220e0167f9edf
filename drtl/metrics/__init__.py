"""Image-quality metrics with the super-resolution literature's conventions.

``psnr`` / ``ssim``: HWC RGB uint8 (or float in [0, 1]) inputs, border crop, BT.601 Y channel by
default; the numbers match BasicSR (``test_y_channel=True``) and the published MATLAB tables.
"""

from drtl.metrics.psnr_ssim import psnr, rgb_to_y, ssim

__all__ = ["psnr", "ssim", "rgb_to_y"]
