"""report/linear_probe.py: a logistic-regression probe reads separable labels and not noise."""

import torch

from report.linear_probe import probe_accuracy


def test_the_probe_separates_linearly_separable_classes_and_not_noise():
    g = torch.Generator().manual_seed(0)
    k = 6
    centres = 3.0 * torch.randn(k, 5, generator=g)  # (K, D)
    y_train, y_test = torch.arange(240) % k, torch.arange(60) % k
    x_train = centres[y_train] + 0.3 * torch.randn(240, 5, generator=g)
    x_test = centres[y_test] + 0.3 * torch.randn(60, 5, generator=g)
    assert probe_accuracy(x_train, y_train, x_test, y_test, k) == 1.0
    noise_train, noise_test = torch.randn(240, 5, generator=g), torch.randn(60, 5, generator=g)
    assert probe_accuracy(noise_train, y_train, noise_test, y_test, k) < 0.45
