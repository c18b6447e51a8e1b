import os

# Before anything loads PyTorch (OpenMP reads it once): threads that finish
# their share of an operation sleep instead of spinning, so a round on a
# machine busy with other work does not burn the cores it shares
# (bench/threads.py). A policy the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from vaal_core.cli import main  # noqa: E402

raise SystemExit(main())
