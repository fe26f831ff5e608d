"""A real photograph for the convolution demos, from a file matplotlib already ships.

grace_hopper.jpg is part of matplotlib's bundled sample data (mpl-data/sample_data); it
is a U.S. Navy photograph of Rear Admiral Grace M. Hopper, in the public domain. Nothing
is downloaded.
"""

from __future__ import annotations

import numpy as np
from matplotlib import cbook
from matplotlib import image as mpimg

SAMPLE_PHOTO = "grace_hopper.jpg"


def load_sample_photo() -> np.ndarray:
    """Grace Hopper's portrait from matplotlib's sample data: uint8 (600, 512, 3) RGB."""
    path = cbook.get_sample_data(SAMPLE_PHOTO, asfileobj=False)
    photo = np.asarray(mpimg.imread(path))
    if photo.dtype != np.uint8:  # some readers return floats in [0, 1]
        photo = np.clip(np.round(photo * 255.0), 0, 255).astype(np.uint8)
    return np.array(photo[..., :3])  # a writable copy (imread's array may be read-only)
