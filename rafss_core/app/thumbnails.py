"""Image and mask-overlay thumbnails for the curation UI (PNG bytes)."""

from __future__ import annotations

from io import BytesIO

import numpy as np


def overlay_png(image: np.ndarray, mask: np.ndarray, colours: dict[int, str],
                size: int = 160, alpha: float = 0.45) -> bytes:
    """``image`` in [0, 1] as grey, each label of ``mask`` blended in its ``#rrggbb``."""
    from PIL import Image

    grey = (np.clip(np.nan_to_num(image.astype(np.float32)), 0, 1) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
    for value in np.unique(mask):
        if value == 0:
            continue
        hex_ = colours.get(int(value), "#ff0000")
        colour = np.array([int(hex_[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float32)
        where = mask == value
        rgb[where] = (1 - alpha) * rgb[where] + alpha * colour
    img = Image.fromarray(rgb.astype(np.uint8), "RGB")
    img.thumbnail((size, size))
    buf = BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
