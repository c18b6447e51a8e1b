"""`auto`, the default: the sampler this project's own simulations found best
for the size of the labeled set (README, "Which sampler `auto` uses").

While labels are few a model gains most from typical examples that cover
the data (TypiClust in the self-supervised feature space); once every class
has enough labels for the task model's uncertainty to mean something, the
uncertainty of that model points at what it still gets wrong. The switch
point is measured in labels per class, so it carries over to projects with
more or fewer classes than CIFAR-10. The uncertainty is the margin between
the two likeliest classes: side by side on CIFAR-10 it finished above random
in every seed where entropy did not (README, "Task-aware samplers").
"""

from __future__ import annotations

from vaal_core.samplers.registry import register_policy

DEFAULT = "auto"  # a project's sampler until its user saves another (the pages; the CLI and API default to it too)


@register_policy("auto", description="chosen by evidence: typical, covering images while labels are few "
                                     "(typiclust), then the task model's uncertainty (see README)",
                 early="typiclust", late="margin", switch_per_class=100)
def choose_auto(n_labeled: int, n_classes: int, classes_labeled: int, early: str, late: str,
                switch_per_class: int) -> tuple[str, str]:
    per_class = n_labeled / max(n_classes, 1)
    if classes_labeled < 2:
        return early, (f"{early}: fewer than 2 classes are labeled, so there is no classifier whose uncertainty "
                       f"could guide the picks; typical, covering images first")
    if per_class < switch_per_class:
        return early, (f"{early}: {n_labeled:,} labels ({per_class:.0f} per class) is a low budget, where typical, "
                       f"covering images beat random (switches to {late} at {switch_per_class} per class)")
    return late, (f"{late}: {n_labeled:,} labels ({per_class:.0f} per class) is past the low-budget range "
                  f"({switch_per_class} per class), where the task model's uncertainty picks better")
