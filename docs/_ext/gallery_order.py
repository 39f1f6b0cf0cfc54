"""The order of the gallery: from first use to the internals, not alphabetical."""

from __future__ import annotations

from pathlib import Path

ORDER = (
    "plot_quickstart.py",
    "plot_train_from_scratch.py",
    "plot_evaluate.py",
    "plot_gradient_descent.py",
    "plot_reproducibility.py",
    "plot_transfer_learning.py",
    "plot_feature_maps.py",
    "plot_custom_loop.py",
    "distributed_torchrun.py",
)


class ExampleOrder:
    """sphinx-gallery ``within_subsection_order``: listed files first, others by name."""

    def __init__(self, src_dir: str) -> None:
        self.src_dir = src_dir

    def __call__(self, filename: str) -> tuple[int, str]:
        name = Path(filename).name
        return (ORDER.index(name) if name in ORDER else len(ORDER), name)

    def __repr__(self) -> str:  # sphinx-gallery keys its cache on the repr
        return f"<{type(self).__name__}: {', '.join(ORDER)}>"
