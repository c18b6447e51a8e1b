"""Samplers: strategies that score the unlabeled pool, in one registry.

    from vaal_core import samplers
    samplers.names()                      # every registered name
    samplers.select("vaal", item_ids, inputs, pool_ids, labeled_ids, budget, rng)

registry.py holds the registry, `Context` and the shared selector; the
strategies are grouped by what they read: baselines.py (random, coreset),
adversarial.py (vaal, ta_vaal), uncertainty.py (entropy, margin,
least_confidence, bald, ll4al), typical.py (typiclust, probcover: the
project's feature space), batch_aware.py (badge, vaal_diverse). auto.py
holds the policy `auto`, which picks one of them by the labels at hand
(`resolve`). Importing this package registers them all.
"""

from vaal_core.samplers import adversarial, auto, baselines, batch_aware, typical, uncertainty  # noqa: F401 - registers them
from vaal_core.samplers.registry import (REGISTRY, Context, Resolved, Sampler, Selection, UndeclaredNeed, check_budget, get,
                                         names, rank, register, register_policy, resolve, select)
from vaal_core.samplers.auto import DEFAULT

__all__ = ["DEFAULT", "REGISTRY", "Context", "Resolved", "Sampler", "Selection", "UndeclaredNeed", "check_budget",
           "get", "names", "rank", "register", "register_policy", "resolve", "select"]
