"""Imbalanced binary classification (fraud/churn notebook pattern): a 20-32-32-1 net outputs a logit,
``BCEWithLogitsLoss(pos_weight=n_neg/n_pos)`` reweights the rare positives, Adam, gradients clipped
with ``nn.utils.clip_grad_norm_`` each step; precision/recall at threshold 0.5 on held-out data."""
import argparse

import numpy as np

from examples_backend import torch, nn, optim, F

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()

torch.manual_seed(0)
rng = np.random.RandomState(11)
n, d = 2000, 20
X = rng.randn(n, d).astype(np.float32)
w = rng.randn(d)
logit = X @ w / np.sqrt(d) * 3 - 3.0 + 0.5 * X[:, 0] * X[:, 1]
y = (rng.rand(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)  # about 10% positives

X_train, y_train = torch.from_numpy(X[:1600]), torch.from_numpy(y[:1600]).unsqueeze(1)
X_test, y_test = torch.from_numpy(X[1600:]), torch.from_numpy(y[1600:]).unsqueeze(1)
pos_weight = torch.tensor([(y_train == 0).sum().item() / max(1.0, y_train.sum().item())])

model = nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
optimizer = optim.Adam(model.parameters(), lr=1e-3)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X_train, y_train),
                                     batch_size=64, shuffle=True)


def evaluate():
    model.eval()
    with torch.no_grad():
        logits = model(X_test)
        pred = (torch.sigmoid(logits) > 0.5).float()
        tp = (pred * y_test).sum().item()
        precision = tp / max(1.0, pred.sum().item())
        recall = tp / max(1.0, y_test.sum().item())
        return criterion(logits, y_test).item(), precision, recall


print(f"positives {y_train.mean().item():.3f} pos_weight {pos_weight.item():.2f}")
print(f"first_loss {evaluate()[0]:.6g}")
for epoch in range(args.epochs):
    model.train()
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
    test_loss, precision, recall = evaluate()
    if (epoch + 1) % 5 == 0:
        print(f"epoch {epoch + 1} test loss {test_loss:.4f} precision {precision:.3f} "
              f"recall {recall:.3f}")
print(f"final_loss {test_loss:.6g}")
