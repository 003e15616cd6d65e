"""Training-batch augmentation on the device (Chen et al. 2025, Section 6.1
for CIFAR): a random crop from the image padded by ``pad`` zero pixels on
each side, then a horizontal flip with probability 1/2, drawn per image."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def crop_and_flip(
    key: jax.Array, x: jax.Array, image_shape: tuple[int, ...], pad: int = 4
) -> jax.Array:
    """``x`` is a flat batch ``(batch, H * W * C)``; returns the same shape."""
    h, w, c = image_shape
    images = x.reshape(-1, h, w, c)
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

    def one(k, image):
        k_crop, k_flip = jax.random.split(k)
        top, left = jax.random.randint(k_crop, (2,), 0, 2 * pad + 1)
        crop = jax.lax.dynamic_slice(image, (top, left, 0), (h, w, c))
        return jnp.where(jax.random.bernoulli(k_flip), crop[:, ::-1], crop)

    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(one)(keys, padded).reshape(x.shape)
