"""What a round keeps in rounds/<id>/ for the pages, beside the store's
rows: the space it mapped (Explore's map, the "Why this image?" card's
nearest labeled images; maps/why.py reads them) and, for a VAAL round, the
VAE's reconstruction of each batch image (the card's picture beside the
image). Written by rank 0 (`loop/round.py`) before the queue is swapped in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaal_core.files import save_array_atomic


def save_space(folder: Path, item_ids: np.ndarray, space: tuple[np.ndarray, np.ndarray | None] | None) -> None:
    """item_ids.npy, the space's rows (latents.npy) and the discriminator's
    P(labeled) (disc_prob.npy) when one ranked; nothing for no space."""
    if space is None:
        return
    latents, disc_prob = space
    save_array_atomic(folder / "item_ids.npy", item_ids)
    if disc_prob is not None:
        save_array_atomic(folder / "disc_prob.npy", disc_prob.astype(np.float32))
    save_array_atomic(folder / "latents.npy", latents.astype(np.float32))  # last: the map looks for this one


RECONSTRUCTED = 1000  # at most this many of a batch's images get the VAE's reconstruction kept


def save_reconstructions(folder: Path, models, round_id: int, item_ids: np.ndarray, latents: np.ndarray,
                        batch: list[int]) -> None:
    """rounds/<id>/recon.npy (uint8 images) and recon_ids.npy: the VAE's
    decoding of each batch image's latent mean, for the "why picked" card.
    A few KB an image, so only the batch (the images a user asks about)."""
    from vaal_core.learn import vaal

    state = models.load("vaal")
    if state is None or state.get("round_id") != round_id or not batch:
        return
    row_of = {int(i): r for r, i in enumerate(item_ids)}
    ids = np.array([i for i in batch[:RECONSTRUCTED] if int(i) in row_of], dtype=np.int64)
    images = vaal.reconstruct(state, latents[[row_of[int(i)] for i in ids]])
    save_array_atomic(folder / "recon_ids.npy", ids)
    save_array_atomic(folder / "recon.npy", images)
