"""Gaussian policy gradient for a continuous action (the REINFORCE/actor pattern of continuous-control
code): the net gives the action mean, a learned ``log_std`` parameter the spread, actions are sampled
from ``torch.distributions.Normal``, the loss is ``-(log_prob * advantage).mean()`` minus a small
entropy bonus. One-step task: reward = -(action - target(state))^2 with a hidden linear target.
Reported loss: mean squared error of the policy mean against the target on held-out states."""
import argparse

import numpy as np

from examples_backend import torch, nn, optim, F

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=300)
args = parser.parse_args()

torch.manual_seed(0)
rng = np.random.RandomState(6)
w_true = torch.tensor(rng.randn(4, 1), dtype=torch.float32)
eval_states = torch.tensor(rng.randn(256, 4), dtype=torch.float32)
eval_targets = eval_states @ w_true


class GaussianPolicy(nn.Module):
    def __init__(self, obs_dim=4, act_dim=1, hidden=64):
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(),
                                nn.Linear(hidden, hidden), nn.Tanh(),
                                nn.Linear(hidden, act_dim))
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def forward(self, obs):
        mean = self.mu(obs)
        std = torch.exp(self.log_std)
        return torch.distributions.Normal(mean, std)


policy = GaussianPolicy()
optimizer = optim.Adam(policy.parameters(), lr=3e-3)


def eval_mse():
    with torch.no_grad():
        return F.mse_loss(policy.mu(eval_states), eval_targets).item()


print(f"first_loss {eval_mse():.6g}")
for it in range(args.epochs):
    obs = torch.tensor(rng.randn(128, 4), dtype=torch.float32)
    dist = policy(obs)
    action = dist.sample()
    reward = -(action - obs @ w_true).pow(2)
    advantage = (reward - reward.mean()) / (reward.std() + 1e-8)
    log_prob = dist.log_prob(action).sum(dim=-1)
    loss = -(log_prob * advantage.squeeze(-1)).mean() - 1e-3 * dist.entropy().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if (it + 1) % 100 == 0:
        print(f"iter {it + 1} mean reward {reward.mean().item():.4f} "
              f"std {torch.exp(policy.log_std).item():.3f}")
print(f"final_loss {eval_mse():.6g}")
