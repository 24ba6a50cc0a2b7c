"""Fully-connected autoencoder (the MNIST autoencoder blog pattern): 784-128-32-128-784 with ReLU, a
Sigmoid output, MSELoss against the input, Adam. Synthetic images with low-dimensional structure:
mixtures of 8 smooth basis images, squashed into [0, 1]."""
import argparse

import numpy as np

from examples_backend import torch, nn, optim, F

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=10)
args = parser.parse_args()

torch.manual_seed(0)
rng = np.random.RandomState(3)
yy, xx = np.mgrid[0:28, 0:28] / 28.0
basis = np.stack([np.sin(np.pi * (k + 1) * xx) * np.cos(np.pi * (j + 1) * yy)
                  for k in range(4) for j in range(2)]).reshape(8, -1)
codes = rng.randn(1024, 8)
images = 1.0 / (1.0 + np.exp(-(codes @ basis)))
data = torch.tensor(images, dtype=torch.float32)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=64,
                                     shuffle=True)


class Autoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 32))
        self.decoder = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 784),
                                     nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x))


model = Autoencoder()
criterion = nn.MSELoss()
optimizer = optim.Adam(model.parameters(), lr=1e-3)

with torch.no_grad():
    print(f"first_loss {criterion(model(data), data).item():.6g}")
for epoch in range(args.epochs):
    total = 0.0
    for (img,) in loader:
        recon = model(img)
        loss = criterion(recon, img)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * img.shape[0]
    print(f"epoch [{epoch + 1}/{args.epochs}] loss {total / len(data):.5f}")

with torch.no_grad():
    print(f"final_loss {criterion(model(data), data).item():.6g}")
