"""VAAL Studio in a notebook: `vc.Labeler` (label the queue, keyboard
first) and `vc.LatentMap` (the latent map, its selection readable from
Python). They need the notebook extra (`pip install ".[notebook]"`:
anywidget, jupyter-scatter); `vaal_core` loads this package only when one
is asked for.
"""
