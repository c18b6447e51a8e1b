"""Learning: devices, batches from the image cache, the networks, their
training loops (VAAL's game in vaal.py, the task model in task.py), where
models live between rounds (checkpoints.py), and the round pipeline that
turns a sampler's needs into trained models and arrays (pipeline.py).
Nothing here imports PyTorch at package import time."""
