"""Samplers: strategies that score the unlabeled pool, in one registry.

    from vaal_core import samplers
    samplers.names()                      # every registered name
    samplers.select("vaal", item_ids, inputs, pool_ids, labeled_ids, budget, rng)

registry.py holds the registry, `Context` and the shared selector; the
strategies are grouped by what they read: baselines.py (random, coreset),
adversarial.py (vaal, ta_vaal), uncertainty.py (entropy, margin,
least_confidence, bald, ll4al). Importing this package registers them all.
"""

from vaal_core.samplers import adversarial, baselines, uncertainty  # noqa: F401 - registers the strategies
from vaal_core.samplers.registry import (REGISTRY, Context, Sampler, Selection, UndeclaredNeed, check_budget, get,
                                         names, rank, register, select)

__all__ = ["REGISTRY", "Context", "Sampler", "Selection", "UndeclaredNeed", "check_budget", "get",
           "names", "rank", "register", "select"]
