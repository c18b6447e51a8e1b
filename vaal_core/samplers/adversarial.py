"""VAAL (Sinha et al. 2019) and TA-VAAL (Kim et al. 2021): the discriminator
that tells labeled from unlabeled latents ranks the pool; the images it is
surest are unlabeled come first."""

from __future__ import annotations

import numpy as np

from vaal_core.samplers.baselines import coreset_scores
from vaal_core.samplers.registry import CLASSIFIER_COLD_START, Context, register


# A round with nothing labeled goes to typiclust (`cold_start`, applied by `resolve`): on CIFAR-10 at
# 100 labels VAAL's k-center first batch trained a classifier 8 points below random's, typiclust's
# one 1-1.4 points above it (README, "Which sampler auto uses").
@register("vaal", needs=("latents", "disc_prob"), cold_start="typiclust",
          description="VAAL: items the discriminator is surest are unlabeled first")
def vaal_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int) -> np.ndarray:
    if len(labeled_ids) == 0:
        # Called with no labels without resolving first: nothing to tell apart,
        # so the batch covers the latent space instead (k-center greedy).
        ctx.notes["cold_start"] = "k-center greedy on VAE latents (no labeled items yet)"
        return coreset_scores(ctx, pool_ids, labeled_ids, budget)
    return 1.0 - ctx["disc_prob"][ctx.rows(pool_ids)]


@register("ta_vaal", needs=("ta_disc_prob",), **CLASSIFIER_COLD_START,
          description="TA-VAAL (Kim et al. 2021): VAAL whose VAE and discriminator see the predicted task loss")
def ta_vaal_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int) -> np.ndarray:
    """The discriminator was trained on [mu, r] (r = the loss head's
    prediction), so it already folds in the task's view: select as VAAL,
    items it is surest are unlabeled first."""
    return 1.0 - ctx["ta_disc_prob"][ctx.rows(pool_ids)]
