"""The VAAL authors' training loop, re-stated for a speed comparison.

This re-states in our own code the VAE + discriminator game that
sinhasam/vaal trains (solver.py `Solver.train`, model.py `VAE` and
`Discriminator`, main.py and custom_datasets.py for the CIFAR-10 data path;
the repository's last commit, 67263f3, Feb 2020), so that bench/engine.py
can time it beside the project's loop (`vaal_core.learn.vaal.train_vaal`)
in one run, on the same images, architecture and batch.

Kept from the reference:
  - the architecture: VAE encoder 4x4 stride-2 convs 3-128-256-512-1024 with
    batch norm and ReLU, linear mu and logvar (z = 32), decoder linear
    z -> 1024x4x4 then 4x4 stride-2 transposed convs 1024-512-256-128 and a
    1x1 transposed conv to 3 channels; discriminator z -> 512 -> 512 -> 1
    with a sigmoid; their weight initialisation (Kaiming normal for the
    convs and linears inside the Sequential blocks, the others left at
    PyTorch's default, as their try/except leaves them);
  - the batch: 128 labeled and 128 unlabeled images;
  - the step structure of one iteration: two VAE steps (reconstruction MSE
    + beta * KL summed over the batch, on the labeled and on the unlabeled
    batch, + the adversarial BCE that pushes the discriminator to call both
    'labeled'), a fresh pair of batches for the second VAE step, then one
    discriminator step on the second pair's latent means, which the VAE
    computes with a full forward pass (decoder included) under no_grad in
    train mode, as theirs does; the reparameterisation noise and the BCE
    targets are made on the CPU and then moved to the device, as theirs are;
  - the optimisers: Adam, lr 5e-4, for both networks; beta = 1, adversary
    weight = 1;
  - the data path: a Dataset over uint8 HWC images (what torchvision's
    CIFAR10 holds) whose items go uint8 -> PIL image -> RandomHorizontalFlip
    -> ToTensor -> Normalize(0.5, 0.5) one image at a time, batched by a
    torch DataLoader (SubsetRandomSampler, no workers, labeled drop_last,
    unlabeled not) and read through endless generators like their
    `read_data`; batches go to the device with a plain copy (their
    `.cuda()`).

Left out:
  - the task model (VGG16-bn, SGD) that their loop trains in the same
    iteration, and its validation every 1,000 iterations: the figure we
    compare is the VAE + discriminator game only, which is what
    `train_vaal` plays (our task model trains elsewhere);
  - sampling (`sample_for_labeling`), the learning-rate schedule of the
    task model, logging, and the CIFAR-10 download (the images are given).

Changed, only where today's PyTorch requires it: `kaiming_normal_` for the
removed `kaiming_normal`, and the BCE targets shaped (B, 1) like the
discriminator's output (torch 1.1 warned and matched them element by
element; torch 2 refuses the mismatch).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, SubsetRandomSampler
from torchvision import transforms

BATCH = 128
LATENT = 32
LR = 5e-4
VAE_STEPS = 2
ADV_STEPS = 1
BETA = 1.0
ADVERSARY_PARAM = 1.0


class _Reshape(nn.Module):
    def __init__(self, *shape: int):
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(-1, *self.shape)


def _init(module: nn.Module) -> None:
    """Their `kaiming_init`: convs and linears Kaiming normal with zero bias,
    batch norms weight 1 bias 0; anything else untouched."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.kaiming_normal_(module.weight)
        if module.bias is not None:
            module.bias.data.zero_()
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        module.weight.data.fill_(1)
        module.bias.data.zero_()


class ReferenceVAE(nn.Module):
    """The reference VAE for 32x32 RGB images (channels 128..1024, z 32)."""

    def __init__(self, z_dim: int = LATENT, nc: int = 3):
        super().__init__()

        def down(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

        def up(cin: int, cout: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

        self.encoder = nn.Sequential(*down(nc, 128), *down(128, 256), *down(256, 512), *down(512, 1024),
                                     _Reshape(1024 * 2 * 2))  # (B, 4096) for a 32x32 input
        self.fc_mu = nn.Linear(1024 * 2 * 2, z_dim)
        self.fc_logvar = nn.Linear(1024 * 2 * 2, z_dim)
        self.decoder = nn.Sequential(nn.Linear(z_dim, 1024 * 4 * 4), _Reshape(1024, 4, 4),
                                     *up(1024, 512), *up(512, 256), *up(256, 128),
                                     nn.ConvTranspose2d(128, nc, 1))  # (B, nc, 32, 32)
        # Their weight_init walks the Sequential blocks only (fc_mu and
        # fc_logvar fall through its try/except at PyTorch's default init).
        for block in (self.encoder, self.decoder):
            for module in block:
                _init(module)

    def forward(self, x: torch.Tensor):
        h = self.encoder(x)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        # Their reparameterize: noise drawn on the CPU, then moved.
        eps = torch.randn(*mu.size())
        std = (0.5 * logvar).exp()
        if mu.device.type != "cpu":  # theirs: `if mu.is_cuda: ... .cuda()`
            eps = eps.to(mu.device)
        z = eps * std + mu
        return self.decoder(z), z, mu, logvar


class ReferenceDiscriminator(nn.Module):
    """z -> 512 -> 512 -> 1, sigmoid output (B, 1)."""

    def __init__(self, z_dim: int = LATENT):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, 512), nn.ReLU(True), nn.Linear(512, 512), nn.ReLU(True),
                                 nn.Linear(512, 1), nn.Sigmoid())
        for module in self.net:
            _init(module)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def parameter_count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def reference_parameter_count() -> int:
    return parameter_count(ReferenceVAE(), ReferenceDiscriminator())


class UInt8Images(Dataset):
    """What torchvision's CIFAR10 dataset does with its uint8 (N, 32, 32, 3)
    array, wrapped as their custom_datasets.CIFAR10 wraps it: each item is
    (transformed image, target, index)."""

    def __init__(self, images: np.ndarray, targets: np.ndarray | None = None):
        self.images = images
        self.targets = np.zeros(len(images), np.int64) if targets is None else np.asarray(targets, np.int64)
        # custom_datasets.cifar10_transformer
        self.transform = transforms.Compose([transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                             transforms.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        img = self.transform(Image.fromarray(self.images[index]))
        return img, int(self.targets[index]), index


def _endless(loader: DataLoader, labels: bool) -> Iterator:
    """Their `read_data`: pass after pass over the loader, for ever."""
    while True:
        for img, label, _ in loader:
            yield (img, label) if labels else img


def reference_train(images: np.ndarray, labeled_rows: np.ndarray, unlabeled_rows: np.ndarray,
                    iterations: int, device: torch.device | str, seed: int = 0,
                    targets: np.ndarray | None = None, warmup: int = 2, batch_size: int = BATCH) -> dict:
    """Fresh reference models trained for `warmup` + `iterations` iterations
    of the reference loop (task model left out) on uint8 `images`
    (N, 32, 32, 3); only the last `iterations` are timed (the device is
    synchronised at both ends). Returns {"seconds", "iterations",
    "images"}: images counts the labeled + unlabeled images of every VAE
    step in the timed iterations, as the loaders served them (a short last
    unlabeled batch counts what it holds)."""
    if iterations < 1:
        raise ValueError("time at least one iteration")
    device = torch.device(device)
    torch.manual_seed(seed)
    data = UInt8Images(images, targets)

    def loader(rows: np.ndarray, drop_last: bool, salt: int) -> DataLoader:
        gen = torch.Generator().manual_seed(seed * 1000 + salt)
        return DataLoader(data, sampler=SubsetRandomSampler([int(r) for r in rows], generator=gen),
                          batch_size=batch_size, drop_last=drop_last)

    labeled_data = _endless(loader(labeled_rows, True, 1), labels=True)  # main.py: querry_dataloader
    unlabeled_data = _endless(loader(unlabeled_rows, False, 2), labels=False)

    vae, disc = ReferenceVAE(), ReferenceDiscriminator()
    optim_vae = torch.optim.Adam(vae.parameters(), lr=LR)
    optim_disc = torch.optim.Adam(disc.parameters(), lr=LR)
    vae.train()
    disc.train()
    cuda = device.type != "cpu"  # their `args.cuda`: move models and batches
    if cuda:
        vae, disc = vae.to(device), disc.to(device)
    mse_loss, bce_loss = nn.MSELoss(), nn.BCELoss()

    def vae_loss(x, recon, mu, logvar):
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return mse_loss(recon, x) + kld * BETA

    def ones_zeros(n: int, value: float) -> torch.Tensor:
        t = torch.full((n, 1), value)  # made on the CPU, then moved, as theirs
        return t.to(device) if cuda else t

    def next_pair():
        labeled_imgs, _labels = next(labeled_data)  # labels feed only the task model, left out
        unlabeled_imgs = next(unlabeled_data)
        if cuda:
            labeled_imgs, unlabeled_imgs = labeled_imgs.to(device), unlabeled_imgs.to(device)
        return labeled_imgs, unlabeled_imgs

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    seen = 0
    t0 = 0.0
    for it in range(warmup + iterations):
        if it == warmup:
            sync()
            t0, seen = time.perf_counter(), 0
        labeled_imgs, unlabeled_imgs = next_pair()
        # (their task-model step on labeled_imgs would run here)
        for count in range(VAE_STEPS):
            recon, _, mu, logvar = vae(labeled_imgs)
            unsup = vae_loss(labeled_imgs, recon, mu, logvar)
            u_recon, _, u_mu, u_logvar = vae(unlabeled_imgs)
            transductive = vae_loss(unlabeled_imgs, u_recon, u_mu, u_logvar)
            dsc = (bce_loss(disc(mu), ones_zeros(labeled_imgs.size(0), 1.0))
                   + bce_loss(disc(u_mu), ones_zeros(unlabeled_imgs.size(0), 1.0)))
            total = unsup + transductive + ADVERSARY_PARAM * dsc
            optim_vae.zero_grad()
            total.backward()
            optim_vae.step()
            seen += labeled_imgs.size(0) + unlabeled_imgs.size(0)
            if count < VAE_STEPS - 1:
                labeled_imgs, unlabeled_imgs = next_pair()
        for count in range(ADV_STEPS):
            with torch.no_grad():
                _, _, mu, _ = vae(labeled_imgs)
                _, _, u_mu, _ = vae(unlabeled_imgs)
            dsc = (bce_loss(disc(mu), ones_zeros(labeled_imgs.size(0), 1.0))
                   + bce_loss(disc(u_mu), ones_zeros(unlabeled_imgs.size(0), 0.0)))
            optim_disc.zero_grad()
            dsc.backward()
            optim_disc.step()
            if count < ADV_STEPS - 1:
                labeled_imgs, unlabeled_imgs = next_pair()
    sync()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "iterations": iterations, "images": seen,
            "last_losses": {"vae": float(total.detach()), "disc": float(dsc.detach())}}
