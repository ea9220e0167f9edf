"""Composed tasks (drtl.relation.composed): the fitted filter, then a bank task's tail at LR size."""

import numpy as np
import pytest

from drtl.degradations.fitted import apply_fitted, fit_camera
from drtl.degradations.tasks import DEFAULT_BANK, get_task, make_pair
from drtl.relation.composed import PREFIX, composed_pairs, composed_tasks, tail_ops


def test_the_tail_is_what_a_task_does_after_its_last_resize():
    assert [op.kind for op in tail_ops(get_task("jpeg_q30"))] == ["jpeg"]
    assert [op.kind for op in tail_ops(get_task("iso_blur_s1.2+gauss_noise10+jpeg_q50"))] == ["noise", "jpeg"]
    two_resizes = get_task("2nd_plateau_blur_b1.5+area_half+gauss_noise8+iso_blur_s1.0+bilinear_half+sinc_blur_w2.0+jpeg_q70")
    assert [op.kind for op in tail_ops(two_resizes)] == ["blur", "jpeg"]  # after the second resize only
    assert tail_ops(get_task("clean_bicubic")) == () and tail_ops(get_task("iso_blur_s2.4")) == ()
    assert tail_ops(get_task("phone_mid")) == ()  # one op from HR to LR: nothing to compose


def test_every_bank_task_with_a_tail_gives_one_composed_task():
    made = composed_tasks(DEFAULT_BANK)
    names = [n for n, _ in made]
    with_tail = [t.name for t in DEFAULT_BANK if tail_ops(t)]
    assert names == [PREFIX + n for n in with_tail] and len(set(names)) == len(names)
    fams = {get_task(n[len(PREFIX):]).family for n in names}
    assert "blur" not in fams and "phone" not in fams and {"noise", "jpeg", "isp", "realesrgan"} <= fams
    q30 = get_task("jpeg_q30")
    twice = composed_tasks([get_task("clean_bicubic"), q30, q30])
    assert twice == [(PREFIX + "jpeg_q30", tail_ops(q30))]  # no tail: none; one per distinct tail


def test_composed_pairs_are_the_fitted_lr_through_the_tail_and_reproducible():
    rng = np.random.default_rng(0)
    hrs = [np.clip(rng.normal(128, 40, (48, 48, 3)), 0, 255).astype(np.uint8) for _ in range(3)]
    cam = fit_camera([make_pair(h, get_task("iso_blur_s1.2"), 2, np.random.default_rng(1)) for h in hrs], 2, seed=0)
    tail = tail_ops(get_task("jpeg_q30"))
    a = composed_pairs(cam, hrs, tail, "fitted+jpeg_q30", seed=3, noise_scale=0.0)
    b = composed_pairs(cam, hrs, tail, "fitted+jpeg_q30", seed=3, noise_scale=0.0)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b)) and all(x[1] is h for x, h in zip(a, hrs))
    fitted = apply_fitted(hrs[0], cam)
    assert a[0][0].shape == fitted.shape == (24, 24, 3) and a[0][0].dtype == np.uint8
    # JPEG quality 30 of the fitted LR: close to it, but not it
    diff = np.abs(a[0][0].astype(int) - fitted.astype(int))
    assert 0.5 < diff.mean() < 12, diff.mean()
    noisy = composed_pairs(cam, hrs, tail_ops(get_task("gauss_noise30")), "fitted+gauss_noise30", 3, 0.0)
    assert np.std(noisy[0][0].astype(float) - fitted) == pytest.approx(30.0, rel=0.25)  # sigma 30 in 0-255 units
