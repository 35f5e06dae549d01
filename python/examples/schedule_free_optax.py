"""optax's Schedule-Free AdamW, evaluated at its average x: `(transformation, eval_fn)`."""

import optax


def make(lr=0.0025, warmup_steps=0, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, weight_lr_power=2.0):
    tx = optax.contrib.schedule_free_adamw(
        learning_rate=lr, warmup_steps=int(warmup_steps), b1=b1, b2=b2, eps=eps, weight_decay=wd, weight_lr_power=weight_lr_power
    )
    return tx, optax.contrib.schedule_free_eval_params
