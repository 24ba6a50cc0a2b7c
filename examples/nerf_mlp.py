"""NeRF-style MLP: sin/cos positional encoding of 3-D points (``[x, sin(2^k pi x), cos(2^k pi x)]``,
``torch.cat``), an 8-layer ReLU trunk shortened to 4 with NeRF's skip connection (the encoded input
concatenated back in the middle), heads for density (Softplus, as mip-NeRF: a ReLU density head can die) and colour (Sigmoid). Fitted with MSE
and Adam to a synthetic coloured density field sampled at random points."""
import argparse
import math

import numpy as np

from examples_backend import torch, nn, optim, F

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=200)
args = parser.parse_args()


def positional_encoding(x, num_freqs=6):
    out = [x]
    for k in range(num_freqs):
        out.append(torch.sin((2.0 ** k) * math.pi * x))
        out.append(torch.cos((2.0 ** k) * math.pi * x))
    return torch.cat(out, dim=-1)


class NeRF(nn.Module):
    def __init__(self, num_freqs=6, W=64, skip=2, depth=4):
        super().__init__()
        in_ch = 3 + 3 * 2 * num_freqs
        self.num_freqs, self.skip = num_freqs, skip
        self.layers = nn.ModuleList(
            [nn.Linear(in_ch, W)] +
            [nn.Linear(W + in_ch if i == skip else W, W) for i in range(1, depth)])
        self.sigma = nn.Linear(W, 1)
        self.rgb = nn.Sequential(nn.Linear(W, W // 2), nn.ReLU(), nn.Linear(W // 2, 3))

    def forward(self, pts):
        enc = positional_encoding(pts, self.num_freqs)
        h = enc
        for i, layer in enumerate(self.layers):
            if i == self.skip:
                h = torch.cat([h, enc], dim=-1)
            h = F.relu(layer(h))
        return torch.cat([torch.sigmoid(self.rgb(h)), F.softplus(self.sigma(h))], dim=-1)


torch.manual_seed(0)
rng = np.random.RandomState(8)
pts = rng.uniform(-1, 1, size=(2048, 3))
r = np.linalg.norm(pts, axis=1, keepdims=True)
density = np.exp(-4 * r ** 2) * (1 + 0.5 * np.sin(6 * pts[:, :1]))
colour = 0.5 + 0.5 * np.sin(np.pi * pts + np.array([0.0, 2.0, 4.0]))
target = torch.tensor(np.concatenate([colour, density], axis=1), dtype=torch.float32)
points = torch.tensor(pts, dtype=torch.float32)

model = NeRF()
optimizer = optim.Adam(model.parameters(), lr=5e-3)
with torch.no_grad():
    print(f"first_loss {F.mse_loss(model(points), target).item():.6g}")
for it in range(args.epochs):
    idx = torch.randint(0, points.shape[0], (256,))
    loss = F.mse_loss(model(points[idx]), target[idx])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if (it + 1) % 50 == 0:
        print(f"iter {it + 1} loss {loss.item():.5f} psnr {-10 * math.log10(loss.item()):.2f}")

with torch.no_grad():
    print(f"final_loss {F.mse_loss(model(points), target).item():.6g}")
