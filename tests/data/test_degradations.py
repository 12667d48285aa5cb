"""Degradations for unpaired restoration and the PSNR / SSIM image metrics."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from otmap.data.degradations import (
    DEGRADATIONS,
    Blur,
    Compose,
    Downsample,
    GaussianNoise,
    Grayscale,
    Mask,
    build_degradation,
)
from otmap.errors import InputError
from otmap.metrics.images import psnr, psnr_per_image, ssim


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# noise


def test_gaussian_noise_statistics_and_exact_values():
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    y = GaussianNoise(0.3)(x, generator=_gen(1))
    d = y - x
    assert abs(d.mean().item()) < 0.01
    assert abs(d.std().item() - 0.3) < 0.01
    manual = x + 0.3 * torch.randn(x.shape, generator=_gen(1))
    assert torch.equal(y, manual)
    assert y.abs().max() > 1  # not clamped


def test_gaussian_noise_uses_global_rng_without_generator():
    x = torch.zeros(1, 1, 4, 4)
    torch.manual_seed(5)
    a = GaussianNoise(0.1)(x)
    torch.manual_seed(5)
    assert torch.equal(a, GaussianNoise(0.1)(x))


# --------------------------------------------------------------------------------------------
# grayscale


def test_grayscale_luma_exact():
    x = torch.tensor([1.0, -1.0, 0.5]).view(1, 3, 1, 1).repeat(2, 1, 2, 3)
    y = Grayscale()(x)
    assert y.shape == (2, 3, 2, 3)
    expected = torch.tensor(0.299 * 1.0 - 0.587 * 1.0 + 0.114 * 0.5)  # -0.231
    torch.testing.assert_close(y, expected.expand_as(y))
    torch.testing.assert_close(Grayscale()(torch.ones(1, 3, 2, 2)), torch.ones(1, 3, 2, 2))


def test_grayscale_rejects_one_channel():
    with pytest.raises(InputError, match="3 channel|RGB"):
        Grayscale()(torch.zeros(1, 1, 4, 4))


# --------------------------------------------------------------------------------------------
# masks


def test_right_half_mask_exact_columns():
    x = torch.ones(2, 3, 4, 5)
    y = Mask()(x)  # w // 2 = 2: columns 2, 3, 4 set to 0
    assert torch.equal(y[..., :2], torch.ones(2, 3, 4, 2))
    assert torch.equal(y[..., 2:], torch.zeros(2, 3, 4, 3))
    assert torch.equal(x, torch.ones(2, 3, 4, 5))  # input untouched


def test_center_box_mask():
    y = Mask("center_box", value=-1.0, box=0.5)(torch.ones(1, 2, 6, 6))
    expected = torch.ones(1, 2, 6, 6)
    expected[..., 1:4, 1:4] = -1.0  # 3x3 box at ((6 - 3) // 2, (6 - 3) // 2)
    assert torch.equal(y, expected)


def test_random_boxes_reproducible_with_generator():
    m = Mask("random_boxes", value=0.0, box=0.25, n_boxes=2)
    x = torch.ones(8, 3, 8, 8)
    a, b = m(x, generator=_gen(3)), m(x, generator=_gen(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, m(x, generator=_gen(4)))
    masked = (a == 0).float()
    assert torch.equal(masked, masked[:, :1].expand_as(masked))  # same mask on all channels
    per_image = masked[:, 0].sum(dim=(1, 2))
    assert ((per_image >= 4) & (per_image <= 8)).all()  # two 2x2 boxes, possibly overlapping
    assert len({tuple(masked[i, 0].flatten().tolist()) for i in range(8)}) > 1  # per image


# --------------------------------------------------------------------------------------------
# down-sampling


@pytest.mark.parametrize("mode", ["area", "bilinear", "bicubic"])
@pytest.mark.parametrize("upsample", ["nearest", "bilinear", "bicubic", None])
def test_downsample_constant_stays_constant(mode, upsample):
    x = torch.full((2, 3, 8, 8), 0.3)
    y = Downsample(2, mode=mode, upsample=upsample)(x)
    assert y.shape == ((2, 3, 8, 8) if upsample else (2, 3, 4, 4))
    torch.testing.assert_close(y, torch.full_like(y, 0.3))


def test_downsample_area_and_nearest_exact():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    small = Downsample(2, upsample=None)(x)
    assert torch.equal(small, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    big = Downsample(2)(x)
    expected = torch.tensor([[2.5, 2.5, 4.5, 4.5]] * 2 + [[10.5, 10.5, 12.5, 12.5]] * 2)
    assert torch.equal(big, expected.view(1, 1, 4, 4))
    assert torch.equal(Downsample(4, upsample=None)(x), torch.tensor([[[[7.5]]]]))


def test_downsample_noise_matches_manual():
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    y = Downsample(2, noise=0.2)(x, generator=_gen(7))
    small = x.view(2, 1, 16, 2, 16, 2).mean(dim=(3, 5))
    small = small + 0.2 * torch.randn(small.shape, generator=_gen(7))
    manual = small.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(y, manual)


def test_downsample_rejects_indivisible_size():
    with pytest.raises(InputError, match="divide"):
        Downsample(4)(torch.zeros(1, 1, 6, 6))


# --------------------------------------------------------------------------------------------
# blur


def test_blur_constant_and_impulse():
    c = torch.full((1, 3, 9, 9), -0.4)
    torch.testing.assert_close(Blur(1.0)(c), c)
    x = torch.zeros(1, 1, 9, 9)
    x[..., 4, 4] = 1.0
    y = Blur(1.0, kernel_size=3)(x)
    torch.testing.assert_close(y.sum(), torch.tensor(1.0))  # kernel sums to 1: mean preserved
    g = torch.tensor([math.exp(-0.5), 1.0, math.exp(-0.5)])
    g = g / g.sum()
    expected = torch.zeros(9, 9)
    expected[3:6, 3:6] = g[:, None] * g[None, :]
    torch.testing.assert_close(y[0, 0], expected)
    assert Blur(1.0).kernel().numel() == 7  # 2 ceil(3 sigma) + 1


def test_blur_rejects_too_large_kernel():
    with pytest.raises(InputError, match="smaller sigma"):
        Blur(2.0)(torch.zeros(1, 1, 4, 4))


# --------------------------------------------------------------------------------------------
# compose, registry, pickling


def test_compose_applies_steps_in_order():
    x = torch.ones(1, 1, 4, 4)
    mask_then_noise = Compose([Mask(), GaussianNoise(0.1)])(x, generator=_gen(0))
    noise_then_mask = Compose([{"name": "gaussian_noise", "sigma": 0.1}, "mask"])(
        x, generator=_gen(0)
    )
    manual = Mask()(x) + 0.1 * torch.randn(x.shape, generator=_gen(0))
    assert torch.equal(mask_then_noise, manual)
    assert torch.equal(noise_then_mask[..., 2:], torch.zeros(1, 1, 4, 2))
    assert (mask_then_noise[..., 2:] != 0).all()


@pytest.mark.parametrize(
    "d",
    [
        GaussianNoise(0.3),
        Grayscale(),
        Mask("random_boxes", value=-1.0, box=0.25, n_boxes=2),
        Downsample(4, noise=0.1, mode="bicubic", upsample=None),
        Blur(0.8, kernel_size=5),
        Compose([Grayscale(), Downsample(2, noise=0.2)]),
    ],
)
def test_config_round_trip_and_pickle(d):
    spec = d.config()
    assert spec["name"] in DEGRADATIONS
    assert build_degradation(spec).config() == spec
    assert pickle.loads(pickle.dumps(d)).config() == spec
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert torch.equal(pickle.loads(pickle.dumps(d))(x, _gen(2)), d(x, _gen(2)))


def test_build_degradation_names_and_aliases():
    assert build_degradation({"name": "GaussianNoise", "sigma": 0.3}).config() == {
        "name": "GaussianNoise",
        "sigma": 0.3,
    }
    assert isinstance(build_degradation("mask"), Mask)
    assert build_degradation({"name": "downsample", "factor": 4}).config()["name"] == "Downsample"
    assert sorted(DEGRADATIONS) == [
        "Blur",
        "Compose",
        "Downsample",
        "GaussianNoise",
        "Grayscale",
        "Mask",
    ]


def test_build_degradation_errors():
    with pytest.raises(InputError, match="unknown degradation 'jpeg'.*Blur"):
        build_degradation({"name": "jpeg"})
    with pytest.raises(InputError, match="bad arguments"):
        build_degradation({"name": "Blur", "radius": 2})
    with pytest.raises(InputError, match="kind"):
        Mask("left_half")
    with pytest.raises(InputError, match="images"):
        GaussianNoise(0.1)(torch.zeros(4, 4))


# --------------------------------------------------------------------------------------------
# metrics


def test_psnr_hand_values():
    target = torch.rand(3, 3, 8, 8) * 1.6 - 0.8
    # MSE = 0.04, data_range 2: 10 log10(4 / 0.04) = 20 dB
    assert psnr(target + 0.2, target) == pytest.approx(20.0, abs=1e-3)
    offsets = torch.tensor([0.2, 0.02]).view(2, 1, 1, 1)
    per_image = psnr_per_image(target[:2] + offsets, target[:2])
    torch.testing.assert_close(per_image, torch.tensor([20.0, 40.0]), atol=1e-3, rtol=0)
    assert psnr(target[:2] + offsets, target[:2]) == pytest.approx(30.0, abs=1e-3)  # mean


def test_ssim_identity_and_noise_on_small_images():
    x = torch.rand(4, 1, 8, 8, generator=_gen(0)) * 2 - 1
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-5)
    mild = ssim(GaussianNoise(0.1)(x, _gen(1)), x)
    strong = ssim(GaussianNoise(0.5)(x, _gen(1)), x)
    assert 1.0 > mild > strong
    for side in (3, 5, 16):
        y = torch.rand(2, 3, side, side, generator=_gen(side)) * 2 - 1
        assert ssim(y, y) == pytest.approx(1.0, abs=1e-5)
        assert ssim(y, y.flip(0)) < 0.9
    with pytest.raises(InputError, match="3x3"):
        ssim(torch.zeros(1, 1, 2, 8), torch.zeros(1, 1, 2, 8))


def test_metric_shape_checks():
    with pytest.raises(InputError, match="same shape"):
        psnr(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(InputError, match=r"\[n, c, h, w\]"):
        ssim(torch.zeros(4, 4), torch.zeros(4, 4))
