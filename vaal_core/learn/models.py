"""The networks: VAAL's VAE and discriminator (conditioned for TA-VAAL), the
task classifiers (a CIFAR-style ResNet-18, a small CNN for `--fast`) and
LL4AL's loss-prediction head.

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
    """Base of the task classifiers: four stages of features (exposed for
    the loss-prediction head), then global average pool, dropout and one
    linear layer. Dropout sits only before that layer so MC dropout (BALD)
    can sample it on features computed once."""

    stage_channels: list[int]
    fc: nn.Linear

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def pooled(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return feats[-1].mean(dim=(2, 3))  # (B, C)

    def classify(self, pooled: torch.Tensor, dropout: bool | None = None) -> torch.Tensor:
        """Logits from pooled features; `dropout=True` samples dropout even in
        eval mode (MC dropout), None follows the train/eval mode."""
        p = self.dropout_p
        return self.fc(F.dropout(pooled, p, training=self.training if dropout is None else dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pooled(self.features(x)))  # (B, classes) logits


class SmallCNN(TaskNet):
    """The `--fast` classifier: four 2-conv stages, max-pool between them."""

    def __init__(self, num_classes: int, cfg: TaskConfig):
        super().__init__()
        w = cfg.width

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.stage_channels = [w, 2 * w, 4 * w, 8 * w]
        self.stages = nn.ModuleList([block(3, w), block(w, 2 * w), block(2 * w, 4 * w), block(4 * w, 8 * w)])
        self.dropout_p = cfg.dropout
        self.fc = nn.Linear(8 * w, num_classes)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            feats.append(x)  # (B, w * 2^i, S / 2^i, S / 2^i)
        return feats


class CifarResNet18(TaskNet):
    """torchvision's ResNet-18 adapted to small images as in the CIFAR
    literature (and the LL4AL code): a 3x3 stride-1 stem and no max-pool, so
    a 32x32 image keeps 32x32 through layer1 and 4x4 at layer4."""

    def __init__(self, num_classes: int, cfg: TaskConfig):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(num_classes=num_classes)
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
        self.net = net
        self.fc = net.fc  # the same module, named for TaskNet.classify
        self.stage_channels = [64, 128, 256, 512]
        self.dropout_p = cfg.dropout

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        n = self.net
        x = n.relu(n.bn1(n.conv1(x)))
        feats = []
        for layer in (n.layer1, n.layer2, n.layer3, n.layer4):
            x = layer(x)
            feats.append(x)  # (B, 64 * 2^i, S / 2^i, S / 2^i)
        return feats

    def load_backbone(self, state: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
        """Copy the tensors of a torchvision ResNet-18 state dict whose name
        and shape match (an ImageNet checkpoint matches all but the 7x7 stem
        and the classifier, which stay freshly initialised). Returns (how
        many tensors were loaded, the names left out)."""
        state = {k.removeprefix("module.").removeprefix("net."): v for k, v in state.items()}
        own = self.net.state_dict()
        take = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
        self.net.load_state_dict(take, strict=False)
        return len(take), sorted(set(own) - set(take))


def build_task_net(num_classes: int, cfg: TaskConfig) -> TaskNet:
    if cfg.arch == "cnn":
        return SmallCNN(num_classes, cfg)
    if cfg.arch == "resnet18":
        return CifarResNet18(num_classes, cfg)
    raise ValueError(f"unknown task model architecture {cfg.arch!r}; use 'resnet18' or 'cnn'")


class LossHead(nn.Module):
    """LL4AL's loss-prediction module: per stage global average pool -> FC
    128 -> ReLU, the four concatenated -> FC 1. Predicts the task loss of an
    image (in ranking terms: only the order matters)."""

    def __init__(self, stage_channels: list[int], hidden: int = 128):
        super().__init__()
        self.fcs = nn.ModuleList([nn.Linear(c, hidden) for c in stage_channels])
        self.out = nn.Linear(hidden * len(stage_channels), 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        h = [F.relu(fc(f.mean(dim=(2, 3)))) for fc, f in zip(self.fcs, feats)]  # 4 x (B, hidden)
        return self.out(torch.cat(h, dim=1)).squeeze(1)  # (B,)

    @staticmethod
    def ranking_loss(pred: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
        """LL4AL's pairwise margin ranking loss: the batch is paired with its
        reverse (i with B-1-i) and each pair's predicted losses must be
        ordered as the true losses, by at least `margin`. An odd batch leaves
        its middle item unpaired; a batch of one has no pair and gives 0."""
        half = len(pred) // 2
        if half == 0:
            return pred.sum() * 0.0  # keeps the graph, contributes nothing
        dp = (pred - pred.flip(0))[:half]
        dt = (target - target.flip(0))[:half].detach()
        sign = torch.where(dt > 0, 1.0, -1.0)  # the reference: 2 * sign(clamp(dt, min=0)) - 1
        return torch.clamp(margin - sign * dp, min=0).sum() / half
