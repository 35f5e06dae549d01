"""optax's own Adam, as a GradientTransformation."""

import optax


def make(lr=1e-3):
    return optax.adam(lr)
