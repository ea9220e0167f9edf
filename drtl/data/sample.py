"""The built-in sample dataset: no download, made from photos that scikit-image ships.

Three folders under ``OUT``:

- ``aux_hr/HR``: clean HR sources for auxiliary task synthesis (microscopy, astronomy, retina,
  colour wheel and the grayscale textures, replicated to RGB);
- ``pool/{HR,LR}``: the few-shot pool of the *target* camera: crops of four colour photos
  (scikit-image's ``coffee``, ``chelsea`` and ``motorcycle``, the left view of its stereo pair, and
  matplotlib's ``grace_hopper``), the same number from each (round robin), degraded by
  :func:`drtl.degradations.camera.camera_degradation` (a held-out, camera-like pipeline that is
  not in the auxiliary bank);
- ``test/{HR,LR}``: target test pairs from different photos (``astronaut``, ``rocket``).

The pool's photos are every colour photograph the pinned packages ship (no download) that the test
and the auxiliary images do not use; greyscale pictures and drawings are not photos of a colour
camera's scene. Pool, test and auxiliary sources never share a photo. Everything is deterministic
for a seed: one generator draws the auxiliary crops, then the test pairs, then the pool, so the
pool's composition never moves the test crops or the auxiliary images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drtl.data.folder import modcrop, write_hr_folder, write_pairs
from drtl.errors import ConfigError

POOL_PHOTOS = ("coffee", "chelsea", "motorcycle", "grace_hopper")
TEST_PHOTOS = ("astronaut", "rocket")
AUX_PHOTOS = ("immunohistochemistry", "hubble_deep_field", "retina", "colorwheel",
              "brick", "grass", "gravel", "camera", "coins", "moon", "clock")


def _load(name: str) -> np.ndarray:
    """A photo shipped with an installed package (no download): ``skimage.data.<name>()``, except
    ``motorcycle`` (the left view of ``skimage.data.stereo_motorcycle``) and ``grace_hopper``
    (matplotlib's ``mpl-data/sample_data/grace_hopper.jpg``)."""
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    if name == "grace_hopper":
        import matplotlib
        from PIL import Image

        with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg") as im:
            return np.asarray(im.convert("RGB"))
    return getattr(skimage.data, name)()


def _photo(name: str) -> np.ndarray:
    img = _load(name)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3]).astype(np.uint8)


def _crops(img: np.ndarray, size: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """n random size x size crops, rejecting flat ones (std < 12) so every crop has texture."""
    h, w = img.shape[:2]
    out, tries = [], 0
    while len(out) < n:
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crop = img[y : y + size, x : x + size]
        tries += 1
        if crop.std() >= 12 or tries > 50 * n:
            out.append(crop)
    return out


def _registers(lr: np.ndarray, hr: np.ndarray, scale: int) -> bool:
    """Whether the validation stage would accept the pair's registration (drtl.data.registration)."""
    from drtl.data.registration import FAIL_CORRELATION, FAIL_SHIFT_PX, check_pair

    r = check_pair(lr, hr, scale)
    return not r["reliable"] or (r["shift_px"] <= FAIL_SHIFT_PX and r["correlation"] >= FAIL_CORRELATION)


def make_sample(out: str | Path, scale: int = 2, seed: int = 0, hr_size: int = 128,
                pool_size: int = 12, test_size: int = 6, aux_crops: int = 2, aux_size: int = 192) -> dict:
    """Build the sample dataset under ``out``; returns counts and paths."""
    from drtl.degradations.camera import camera_degradation

    if hr_size % scale:
        raise ConfigError(f"hr_size {hr_size} must be a multiple of the scale {scale}")
    out = Path(out)
    rng = np.random.default_rng(seed)

    def target_pairs(photos, n, prefix):
        per = [n // len(photos) + (i < n % len(photos)) for i in range(len(photos))]
        for photo, k in zip(photos, per):
            img = _photo(photo)
            for j, hr in enumerate(_crops(img, hr_size, k, rng)):
                hr = modcrop(hr, scale)
                lr = camera_degradation(hr, scale, rng)
                for _ in range(20):  # a pair the validation would refuse (misregistered) is drawn again
                    if _registers(lr, hr, scale):
                        break
                    hr = modcrop(_crops(img, hr_size, 1, rng)[0], scale)
                    lr = camera_degradation(hr, scale, rng)
                yield f"{prefix}_{photo}_{j:02d}", lr, hr

    def aux_images():
        for photo in AUX_PHOTOS:
            img = _photo(photo)
            if min(img.shape[:2]) > 2 * aux_size:  # large photos: shrink so crops hold more content
                from drtl.degradations.resize import imresize

                img = imresize(img, scale=aux_size * 2 / min(img.shape[:2]))
            for j, crop in enumerate(_crops(img, aux_size, aux_crops, rng)):
                yield f"{photo}_{j:02d}", crop

    n_aux = write_hr_folder(out / "aux_hr", aux_images())
    test = write_pairs(out / "test", target_pairs(TEST_PHOTOS, test_size, "test"), scale)
    pool = write_pairs(out / "pool", target_pairs(POOL_PHOTOS, pool_size, "pool"), scale)  # drawn last
    return {"aux_hr": str(out / "aux_hr"), "pool": str(out / "pool"), "test": str(out / "test"),
            "n_aux_hr": n_aux, "n_pool": len(pool), "n_test": len(test), "scale": scale, "seed": seed}
