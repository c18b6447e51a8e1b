"""The networks: VAAL's VAE and discriminator, and a small CNN task classifier.

Architectures follow the VAAL reference code for 32x32 inputs (encoder
128-256-512-1024 channels, 4x4 stride-2 convs; decoder mirrors it; a 3-layer
MLP discriminator on the latent mean) and scale with the image size and a
width setting, so `--fast` (width 16) trains in seconds on a CPU while the
default matches the reference for GPU use.

Each model owns its loss. Images enter as float tensors in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaal_core.config import TaskConfig, VAEConfig


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class VAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        w, s = cfg.width, cfg.image_size
        self.encoder = nn.Sequential(_down(3, w), _down(w, 2 * w), _down(2 * w, 4 * w), _down(4 * w, 8 * w))
        flat = 8 * w * (s // 16) ** 2
        self.fc_mu = nn.Linear(flat, cfg.latent_dim)
        self.fc_logvar = nn.Linear(flat, cfg.latent_dim)
        self._dec_shape = (8 * w, s // 8, s // 8)
        self.fc_dec = nn.Linear(cfg.latent_dim + cfg.cond_dim, 8 * w * (s // 8) ** 2)
        self.decoder = nn.Sequential(_up(8 * w, 4 * w), _up(4 * w, 2 * w), _up(2 * w, w),
                                     nn.ConvTranspose2d(w, 3, 1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x).flatten(1)  # (B, 8w * (S/16)^2)
        return self.fc_mu(h), self.fc_logvar(h)  # (B, Z) each

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            z = torch.cat([z, cond], dim=1)  # (B, Z + cond_dim)
        h = self.fc_dec(z).view(-1, *self._dec_shape)  # (B, 8w, S/8, S/8)
        return self.decoder(h)  # (B, 3, S, S)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decode(z, cond), mu, logvar

    @staticmethod
    def loss(x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-pixel-normalised ELBO: MSE averaged over pixels, KL summed over
        latent dims, both averaged over the batch, KL divided by the pixels of
        one image. So beta keeps its textbook meaning (beta = 1 is the true
        ELBO ratio) and the loss scale does not grow with image size, unlike
        the reference code, which mixes a mean MSE with a batch-summed KL and
        so lets KL swamp reconstruction."""
        mse = F.mse_loss(recon, x)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1).mean() / x[0].numel()
        return mse + beta * kl, mse, kl


class Discriminator(nn.Module):
    """Tells labeled (1) from unlabeled (0) latent means. Outputs logits; the
    loss uses BCE-with-logits, which is the reference's sigmoid + BCE without
    its overflow at saturated outputs."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        d = cfg.disc_width
        self.net = nn.Sequential(nn.Linear(cfg.latent_dim + cfg.cond_dim, d), nn.ReLU(inplace=True),
                                 nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, 1))

    def forward(self, mu: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            mu = torch.cat([mu, cond], dim=1)
        return self.net(mu).squeeze(1)  # (B,) logits

    @staticmethod
    def loss(logits_labeled: torch.Tensor, logits_unlabeled: torch.Tensor) -> torch.Tensor:
        return (F.binary_cross_entropy_with_logits(logits_labeled, torch.ones_like(logits_labeled))
                + F.binary_cross_entropy_with_logits(logits_unlabeled, torch.zeros_like(logits_unlabeled)))

    @staticmethod
    def fool_loss(*logits: torch.Tensor) -> torch.Tensor:
        """The VAE's adversarial term: make D call every latent 'labeled'."""
        return sum(F.binary_cross_entropy_with_logits(l, torch.ones_like(l)) for l in logits)


class TaskNet(nn.Module):
    """A small CNN classifier (3 conv stages, global average pool): the task
    model of simulations. Four stages' features are exposed for
    loss-prediction heads."""

    def __init__(self, num_classes: int, cfg: TaskConfig):
        super().__init__()
        w = cfg.width

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.stages = nn.ModuleList([block(3, w), block(w, 2 * w), block(2 * w, 4 * w), block(4 * w, 8 * w)])
        self.head = nn.Linear(8 * w, num_classes)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            feats.append(x)  # (B, w * 2^i, S / 2^i, S / 2^i)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1].mean(dim=(2, 3)))  # (B, classes) logits

    @staticmethod
    def loss(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return F.cross_entropy(logits, targets, weight=weight)
