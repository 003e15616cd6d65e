"""Crop-and-flip augmentation: every output is a crop of the padded image,
flipped or not, and both flips and several offsets occur."""

import jax
import jax.numpy as jnp
import numpy as np

from trainers.data.augment import crop_and_flip


def test_each_output_is_a_crop_of_the_padded_image_flipped_or_not():
    shape, pad = (6, 5, 2), 2
    image = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    batch = jnp.asarray(np.repeat(image.reshape(1, -1), 64, axis=0))
    out = np.asarray(crop_and_flip(jax.random.key(0), batch, shape, pad))
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    seen = set()
    for row in out.reshape(-1, *shape):
        matches = [
            (top, left, flip)
            for top in range(2 * pad + 1)
            for left in range(2 * pad + 1)
            for flip in (False, True)
            if np.array_equal(
                row,
                (lambda c: c[:, ::-1] if flip else c)(
                    padded[top : top + shape[0], left : left + shape[1]]
                ),
            )
        ]
        assert matches, "an output is not a crop of the padded image"
        seen.update(matches)
    assert {flip for *_, flip in seen} == {False, True}
    assert len({(t, lft) for t, lft, _ in seen}) > 5
