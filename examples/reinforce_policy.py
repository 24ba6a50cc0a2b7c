"""REINFORCE policy gradient in the shape of PyTorch's examples/reinforcement_learning/reinforce.py:
a softmax policy net, ``torch.distributions.Categorical`` to sample actions and score them,
discounted returns normalised per episode, ``policy_loss = -log_prob * return`` summed over the
episode. The environment is a 10-cell corridor (one-hot position; actions left/right; reward 1 at the
right end), written here so no gym is needed. Reported loss: the mean probability of NOT moving right
over all cells (0 for the optimal policy), computed from the policy without sampling."""
import argparse

import numpy as np

from examples_backend import torch, nn, optim, F

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=150, help="episodes")
parser.add_argument("--gamma", type=float, default=0.95)
args = parser.parse_args()

N_CELLS, MAX_STEPS = 10, 40


class Corridor:
    def __init__(self, seed):
        self.rng = np.random.RandomState(seed)

    def reset(self):
        self.pos = self.rng.randint(0, N_CELLS - 1)
        return self._obs()

    def _obs(self):
        obs = np.zeros(N_CELLS, dtype=np.float32)
        obs[self.pos] = 1.0
        return obs

    def step(self, action):
        self.pos = min(max(self.pos + (1 if action == 1 else -1), 0), N_CELLS - 1)
        done = self.pos == N_CELLS - 1
        return self._obs(), (1.0 if done else 0.0), done


class Policy(nn.Module):
    def __init__(self):
        super(Policy, self).__init__()
        self.affine1 = nn.Linear(N_CELLS, 32)
        self.affine2 = nn.Linear(32, 2)
        self.saved_log_probs = []
        self.rewards = []

    def forward(self, x):
        x = F.relu(self.affine1(x))
        return F.softmax(self.affine2(x), dim=1)


torch.manual_seed(0)
env = Corridor(seed=5)
policy = Policy()
optimizer = optim.Adam(policy.parameters(), lr=1e-2)
eps = np.finfo(np.float32).eps.item()
all_states = torch.eye(N_CELLS)[:N_CELLS - 1]


def select_action(state):
    state = torch.from_numpy(state).float().unsqueeze(0)
    probs = policy(state)
    m = torch.distributions.Categorical(probs)
    action = m.sample()
    policy.saved_log_probs.append(m.log_prob(action))
    return action.item()


def finish_episode():
    R = 0
    policy_loss = []
    returns = []
    for r in policy.rewards[::-1]:
        R = r + args.gamma * R
        returns.insert(0, R)
    returns = torch.tensor(returns)
    if len(returns) > 1:
        returns = (returns - returns.mean()) / (returns.std() + eps)
    for log_prob, R in zip(policy.saved_log_probs, returns):
        policy_loss.append(-log_prob * R)
    optimizer.zero_grad()
    policy_loss = torch.cat(policy_loss).sum()
    policy_loss.backward()
    optimizer.step()
    del policy.rewards[:]
    del policy.saved_log_probs[:]


def wrong_way_probability():
    with torch.no_grad():
        return (1.0 - policy(all_states)[:, 1]).mean().item()


print(f"first_loss {wrong_way_probability():.6g}")
running_length = MAX_STEPS
for i_episode in range(args.epochs):
    state = env.reset()
    for t in range(MAX_STEPS):
        action = select_action(state)
        state, reward, done = env.step(action)
        policy.rewards.append(reward)
        if done:
            break
    running_length = 0.95 * running_length + 0.05 * (t + 1)
    finish_episode()
    if (i_episode + 1) % 50 == 0:
        print(f"episode {i_episode + 1} running length {running_length:.2f}")
print(f"final_loss {wrong_way_probability():.6g}")
