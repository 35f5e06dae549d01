"""torch.optim.Adam: a factory whose first parameter is `params`."""

import torch


def make(params, lr=1e-3):
    return torch.optim.Adam(params, lr=lr)
