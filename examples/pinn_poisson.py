"""Physics-informed neural network (the Raissi-style PINN tutorial): solve u''(x) = -pi^2 sin(pi x)
on [0, 1] with u(0) = u(1) = 0 (exact solution sin(pi x)). A Tanh MLP gives u(x); u_x and u_xx come
from ``torch.autograd.grad(..., create_graph=True)`` so the PDE residual itself can be trained with
Adam. Reported loss: residual MSE + boundary MSE."""
import argparse
import math

from examples_backend import torch, nn, optim, F

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=500)
args = parser.parse_args()

torch.manual_seed(0)


class PINN(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(),
                                 nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x)


model = PINN()
optimizer = optim.Adam(model.parameters(), lr=3e-3)
x_f = torch.linspace(0, 1, 64).view(-1, 1).requires_grad_(True)  # collocation points
x_b = torch.tensor([[0.0], [1.0]])                                # boundary points
u_b = torch.zeros(2, 1)


def pde_loss():
    u = model(x_f)
    u_x = torch.autograd.grad(u, x_f, grad_outputs=torch.ones_like(u), create_graph=True)[0]
    u_xx = torch.autograd.grad(u_x, x_f, grad_outputs=torch.ones_like(u_x), create_graph=True)[0]
    f = u_xx + math.pi ** 2 * torch.sin(math.pi * x_f)
    return torch.mean(f ** 2) + torch.mean((model(x_b) - u_b) ** 2)


for epoch in range(args.epochs):
    optimizer.zero_grad()
    loss = pde_loss()
    loss.backward()
    optimizer.step()
    if epoch == 0:
        print(f"first_loss {loss.item():.6g}")
    if (epoch + 1) % 100 == 0:
        print(f"epoch {epoch + 1} loss {loss.item():.5f}")

with torch.no_grad():
    x_test = torch.linspace(0, 1, 101).view(-1, 1)
    err = (model(x_test) - torch.sin(math.pi * x_test)).abs().max().item()
print(f"max abs error vs exact {err:.4f}")
print(f"final_loss {pde_loss().item():.6g}")
