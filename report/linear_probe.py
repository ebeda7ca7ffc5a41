"""Linear probes: what a representation says about a label, read by a logistic regression."""

import torch
import torch.nn.functional as F
from torch import nn


def fit_probe(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float = 1e-3,
              iters: int = 100) -> tuple[torch.Tensor, torch.Tensor, nn.Linear]:
    """A multinomial logistic regression on standardised x (N, D) for labels y (N,) in
    0..classes-1, fitted by L-BFGS from zero (deterministic). Returns the standardisation
    (mean, std) and the layer."""
    x = x.double()
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    xs = (x - mean) / std
    layer = nn.Linear(x.shape[1], classes).double()
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(layer(xs), y) + l2 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return mean, std, layer


@torch.no_grad()
def probe_hits(train: torch.Tensor, y_train: torch.Tensor, test: torch.Tensor,
               y_test: torch.Tensor, classes: int) -> torch.Tensor:
    """Whether a linear probe fitted on (train, y_train) reads each test label right.
    # (N_test,) bool"""
    with torch.enable_grad():
        mean, std, layer = fit_probe(train, y_train, classes)
    return layer((test.double() - mean) / std).argmax(1) == y_test


def probe_accuracy(train: torch.Tensor, y_train: torch.Tensor, test: torch.Tensor,
                   y_test: torch.Tensor, classes: int) -> float:
    """Held-out accuracy of a linear probe fitted on (train, y_train)."""
    return probe_hits(train, y_train, test, y_test, classes).double().mean().item()
