"""Curve fitting with L-BFGS (the scipy.curve_fit-in-PyTorch pattern): the parameters of
y = a * exp(-b * x) + c live in a Module, ``optim.LBFGS(line_search_fn="strong_wolfe")`` calls a
closure that recomputes the MSE and its gradient. Then a tiny Tanh MLP fits the residual the same way."""
import argparse

import numpy as np

from examples_backend import torch, nn, optim, F

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=10, help="LBFGS outer steps")
args = parser.parse_args()

torch.manual_seed(0)
rng = np.random.RandomState(10)
x_np = np.linspace(0, 4, 100)
y_np = 2.5 * np.exp(-1.3 * x_np) + 0.5 + 0.1 * np.sin(3 * x_np) + 0.01 * rng.randn(100)
x = torch.tensor(x_np, dtype=torch.float32).unsqueeze(1)
y = torch.tensor(y_np, dtype=torch.float32).unsqueeze(1)


class ExpDecay(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(1.0))
        self.b = nn.Parameter(torch.tensor(0.5))
        self.c = nn.Parameter(torch.tensor(0.0))

    def forward(self, x):
        return self.a * torch.exp(-self.b * x) + self.c


curve = ExpDecay()
criterion = nn.MSELoss()
optimizer = optim.LBFGS(curve.parameters(), lr=1, max_iter=20, history_size=10,
                        line_search_fn="strong_wolfe")


def closure():
    optimizer.zero_grad()
    loss = criterion(curve(x), y)
    loss.backward()
    return loss


with torch.no_grad():
    print(f"first_loss {criterion(curve(x), y).item():.6g}")
for step in range(args.epochs):
    loss = optimizer.step(closure)
print(f"fit a={curve.a.item():.3f} b={curve.b.item():.3f} c={curve.c.item():.3f} "
      f"mse {loss.item():.3e}")

# stage 2: a small MLP on the residual (the wiggle the exponential cannot fit)
with torch.no_grad():
    residual = y - curve(x)
mlp = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
optimizer2 = optim.LBFGS(mlp.parameters(), lr=1, max_iter=20, line_search_fn="strong_wolfe")


def closure2():
    optimizer2.zero_grad()
    loss = criterion(mlp(x), residual)
    loss.backward()
    return loss


for step in range(args.epochs):
    optimizer2.step(closure2)
with torch.no_grad():
    total = criterion(curve(x) + mlp(x), y).item()
print(f"final_loss {total:.6g}")
