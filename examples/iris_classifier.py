"""Iris-style classifier: 4 features, 3 classes, a 4-16-3 ReLU net trained full-batch with
CrossEntropyLoss and SGD with momentum (the classic tutorial shape). Synthetic Iris: three Gaussian
clusters placed at the real species' feature means with their spreads; features standardised."""
import argparse

import numpy as np

from examples_backend import torch, nn, optim, F

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=200)
args = parser.parse_args()

torch.manual_seed(0)
rng = np.random.RandomState(1)
means = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]])
stds = np.array([[0.35, 0.38, 0.17, 0.10], [0.52, 0.31, 0.47, 0.20], [0.64, 0.32, 0.55, 0.27]])
y = np.repeat(np.arange(3), 50)
X = means[y] + stds[y] * rng.randn(150, 4)
X = (X - X.mean(axis=0)) / X.std(axis=0)
perm = rng.permutation(150)
X_train, y_train = torch.tensor(X[perm[:120]], dtype=torch.float32), torch.tensor(y[perm[:120]])
X_test, y_test = torch.tensor(X[perm[120:]], dtype=torch.float32), torch.tensor(y[perm[120:]])


class IrisNet(nn.Module):
    def __init__(self, input_dim=4, hidden_dim=16, output_dim=3):
        super(IrisNet, self).__init__()
        self.layer1 = nn.Linear(input_dim, hidden_dim)
        self.layer2 = nn.Linear(hidden_dim, output_dim)

    def forward(self, x):
        x = F.relu(self.layer1(x))
        return self.layer2(x)


model = IrisNet()
loss_fn = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

for epoch in range(args.epochs):
    y_pred = model(X_train)
    loss = loss_fn(y_pred, y_train)
    if epoch == 0:
        print(f"first_loss {loss.item():.6g}")
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if (epoch + 1) % 50 == 0:
        print(f"epoch {epoch + 1} loss {loss.item():.4f}")

with torch.no_grad():
    logits = model(X_test)
    test_loss = loss_fn(logits, y_test).item()
    accuracy = (torch.argmax(logits, dim=1) == y_test).float().mean().item()
print(f"test accuracy {accuracy:.3f}")
print(f"final_loss {loss_fn(model(X_train), y_train).item():.6g}")
