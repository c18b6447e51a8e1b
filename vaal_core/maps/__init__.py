"""2-D maps of the latent space: UMAP projections (projection.py), kept
once computed (cache.py), and what the Explore page draws (explore.py)."""
