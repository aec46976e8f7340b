import math

import pytest
import torch

from padhash.errors import PadhashError
from padhash.metrics import perceptibility, psnr, ssim


def test_psnr_identical_is_inf_and_known_value():
    x = torch.zeros(2, 3, 8, 8)
    y = x.clone()
    y[1] += 0.1  # mse = 0.01 -> 20 dB
    values = psnr(x, y)
    assert math.isinf(values[0].item()) and values[0] > 0
    assert values[1].item() == pytest.approx(20.0)


def test_perceptibility_value():
    x = torch.zeros(1, 3, 4, 4)
    y = x.clone()
    y[0, 0] = 0.2  # one channel of three differs by 0.2: mean sq = 0.04 / 3
    assert perceptibility(x, y).item() == pytest.approx(math.sqrt(0.04 / 3))


def test_ssim_identical_and_degraded():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert (ssim(x, noisy) < 0.9).all()
    assert ssim(x[:, :, :5, :5], noisy[:, :, :5, :5]).shape == (2,)


def test_shape_mismatch_raises():
    with pytest.raises(PadhashError, match="same"):
        psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
