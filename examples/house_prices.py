"""House-price regression (the Boston/California-housing tutorial pattern): standardise features and
target, a 13-64-32-1 ReLU net, mini-batches from a DataLoader, HuberLoss for training, MSELoss for
evaluation, Adam with a StepLR schedule. Synthetic prices: a nonlinear function of 13 features."""
import argparse

import numpy as np

from examples_backend import torch, nn, optim, F

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=30)
args = parser.parse_args()

torch.manual_seed(0)
rng = np.random.RandomState(2)
n, d = 512, 13
X = rng.rand(n, d) * rng.uniform(1, 100, size=d)  # features on very different scales
price = 50 + 3 * X[:, 0] / 10 - 2 * np.log1p(X[:, 1]) + 0.01 * X[:, 2] * X[:, 3] + rng.randn(n) * 2

split = int(0.8 * n)
x_mean, x_std = X[:split].mean(axis=0), X[:split].std(axis=0)
y_mean, y_std = price[:split].mean(), price[:split].std()
X_std = (X - x_mean) / x_std
y_std_ = (price - y_mean) / y_std

X_train = torch.tensor(X_std[:split], dtype=torch.float32)
y_train = torch.tensor(y_std_[:split], dtype=torch.float32).view(-1, 1)
X_val = torch.tensor(X_std[split:], dtype=torch.float32)
y_val = torch.tensor(y_std_[split:], dtype=torch.float32).view(-1, 1)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X_train, y_train),
                                     batch_size=32, shuffle=True)

model = nn.Sequential(
    nn.Linear(d, 64),
    nn.ReLU(),
    nn.Linear(64, 32),
    nn.ReLU(),
    nn.Linear(32, 1),
)
criterion = nn.HuberLoss(delta=1.0)
mse = nn.MSELoss()
optimizer = optim.Adam(model.parameters(), lr=1e-2)
scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)

with torch.no_grad():
    print(f"first_loss {mse(model(X_val), y_val).item():.6g}")
for epoch in range(args.epochs):
    model.train()
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
    scheduler.step()
    model.eval()
    with torch.no_grad():
        val_mse = mse(model(X_val), y_val).item()
    if (epoch + 1) % 10 == 0:
        rmse_dollars = (val_mse ** 0.5) * y_std
        print(f"epoch {epoch + 1} val_mse {val_mse:.4f} rmse {rmse_dollars:.2f} "
              f"lr {optimizer.param_groups[0]['lr']:.4f}")
print(f"final_loss {val_mse:.6g}")
