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

    The batch is padded once (border rows and columns repeated by `cat`: replicate padding for any dtype),
    then each image's window, a strided view, is copied into the output: contiguous row copies, on a CPU
    about 15x faster than one advanced-indexing gather over every pixel (which a GPU runs as one kernel)."""
    batch, height, width = images.shape[:3]
    pad = shift_padding(height, width) if pad is None else pad
    device = images.device
    offsets = torch.randint(
        -pad, pad + 1, (2, batch, 1), generator=generator, device=generator.device if generator is not None else device
    )
    if device.type != "cpu":  # one gather kernel: row i of image b reads row clamp(i + dy_b) (likewise columns)
        offsets = offsets.to(device)
        rows = (torch.arange(height, device=device) + offsets[0]).clamp_(0, height - 1)  # [B, H]
        cols = (torch.arange(width, device=device) + offsets[1]).clamp_(0, width - 1)  # [B, W]
        return images[torch.arange(batch, device=device).view(batch, 1, 1), rows.unsqueeze(2), cols.unsqueeze(1)]
    edge = lambda part, dim: part.expand(*[pad if d == dim else -1 for d in range(images.dim())])  # noqa: E731
    padded = torch.cat([edge(images[:, :1], 1), images, edge(images[:, -1:], 1)], dim=1)
    padded = torch.cat([edge(padded[:, :, :1], 2), padded, edge(padded[:, :, -1:], 2)], dim=2)
    out = torch.empty_like(images)
    for b, (dy, dx) in enumerate((offsets[:, :, 0] + pad).T.tolist()):
        out[b] = padded[b, dy : dy + height, dx : dx + width]
    return out
