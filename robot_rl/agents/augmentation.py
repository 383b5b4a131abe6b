"""DrQ's random-shift augmentation: pad each image by replicating its border, then crop a random
window of the original size; every image of the batch gets its own integer shift."""

from __future__ import annotations

import torch


def shift_padding(height: int, width: int) -> int:
    """DrQ pads 84x84 images by 4 px; the padding scales with the image size (128 -> 6)."""
    return max(1, round(4 * min(height, width) / 84))


def random_shift(
    images: torch.Tensor, generator: torch.Generator | None = None, pad: int | None = None
) -> torch.Tensor:
    """Shift each image of [B, H, W, C] (any dtype, channels-last) by its own random integer offset
    in [-pad, pad] along H and W, filling with the replicated border. Same shape and dtype.

    Pad-then-crop is one gather: output row i of image b reads input row clamp(i + dy_b, 0, H-1)
    (and likewise for columns), which is exactly a crop of the replicate-padded image."""
    batch, height, width = images.shape[:3]
    pad = shift_padding(height, width) if pad is None else pad
    device = images.device
    offsets = torch.randint(
        -pad, pad + 1, (2, batch, 1), generator=generator, device=generator.device if generator is not None else device
    ).to(device)
    rows = (torch.arange(height, device=device) + offsets[0]).clamp_(0, height - 1)  # [B, H]
    cols = (torch.arange(width, device=device) + offsets[1]).clamp_(0, width - 1)  # [B, W]
    index = torch.arange(batch, device=device).view(batch, 1, 1)
    return images[index, rows.unsqueeze(2), cols.unsqueeze(1)]
