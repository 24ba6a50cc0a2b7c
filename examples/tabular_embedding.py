"""Kaggle-style tabular net (the fastai/"entity embeddings" notebook pattern): each categorical column
goes through its own ``nn.Embedding`` (size min(50, (n+1)//2)), continuous columns through
``BatchNorm1d``, everything concatenated into Linear-ReLU-BatchNorm1d-Dropout blocks and a
3-class CrossEntropyLoss head; Adam; train/eval modes for BatchNorm and Dropout. Synthetic table:
2 categorical columns (12 cities, 5 product types) and 6 numeric ones."""
import argparse

import numpy as np

from examples_backend import torch, nn, optim, F

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=15)
args = parser.parse_args()

torch.manual_seed(0)
rng = np.random.RandomState(9)
n = 1024
cat_sizes = [12, 5]
cats = np.stack([rng.randint(0, c, size=n) for c in cat_sizes], axis=1)
conts = rng.randn(n, 6) * np.array([1, 10, 0.1, 5, 1, 100]) + np.array([0, 50, 1, -3, 0, 500])
city_effect, product_effect = rng.randn(12), rng.randn(5)
score = (city_effect[cats[:, 0]] + product_effect[cats[:, 1]] + (conts[:, 0] > 0)
         + 0.1 * (conts[:, 1] - 50) + rng.randn(n) * 0.3)
y = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))


class TabularModel(nn.Module):
    def __init__(self, emb_szs, n_cont, out_sz, layers, p=0.2):
        super().__init__()
        self.embeds = nn.ModuleList([nn.Embedding(ni, nf) for ni, nf in emb_szs])
        self.emb_drop = nn.Dropout(p)
        self.bn_cont = nn.BatchNorm1d(n_cont)
        layerlist = []
        n_in = sum(nf for ni, nf in emb_szs) + n_cont
        for i in layers:
            layerlist.append(nn.Linear(n_in, i))
            layerlist.append(nn.ReLU(inplace=True))
            layerlist.append(nn.BatchNorm1d(i))
            layerlist.append(nn.Dropout(p))
            n_in = i
        layerlist.append(nn.Linear(layers[-1], out_sz))
        self.layers = nn.Sequential(*layerlist)

    def forward(self, x_cat, x_cont):
        embeddings = [e(x_cat[:, i]) for i, e in enumerate(self.embeds)]
        x = self.emb_drop(torch.cat(embeddings, 1))
        x = torch.cat([x, self.bn_cont(x_cont)], 1)
        return self.layers(x)


emb_szs = [(c, min(50, (c + 1) // 2)) for c in cat_sizes]
model = TabularModel(emb_szs, conts.shape[1], 3, [64, 32], p=0.1)
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.01)

cat_t = torch.tensor(cats, dtype=torch.int64)
cont_t = torch.tensor(conts, dtype=torch.float)
y_t = torch.tensor(y).long()
train_idx, test_idx = np.arange(0, 800), np.arange(800, n)
cat_train, cont_train, y_train = cat_t[:800], cont_t[:800], y_t[:800]
cat_test, cont_test, y_test = cat_t[800:], cont_t[800:], y_t[800:]
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(cat_train, cont_train, y_train), batch_size=64, shuffle=True)


def evaluate():
    model.eval()
    with torch.no_grad():
        logits = model(cat_test, cont_test)
        return criterion(logits, y_test).item(), (logits.argmax(1) == y_test).float().mean().item()


print(f"first_loss {evaluate()[0]:.6g}")
for epoch in range(args.epochs):
    model.train()
    for xc, xn, yb in loader:
        optimizer.zero_grad()
        loss = criterion(model(xc, xn), yb)
        loss.backward()
        optimizer.step()
    test_loss, acc = evaluate()
    if (epoch + 1) % 5 == 0:
        print(f"epoch {epoch + 1} train {loss.item():.4f} test {test_loss:.4f} acc {acc:.3f}")
print(f"final_loss {test_loss:.6g}")
