"""timm-style transformer MLP: the ``Mlp`` block of timm.layers (fc1 -> GELU -> Dropout -> fc2 ->
Dropout) inside pre-norm residual blocks ``x = x + mlp(norm(x))`` with LayerNorm, over a sequence of
tokens [batch, tokens, channels] (an MLP-Mixer/ViT channel-MLP shape); mean-pooled tokens go to a
classification head. AdamW, CrossEntropyLoss. Synthetic task: the class is which of 4 random
directions the token average points along."""
import argparse

import numpy as np

from examples_backend import torch, nn, optim, F

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=8)
args = parser.parse_args()


class Mlp(nn.Module):
    """MLP as used in Vision Transformer, MLP-Mixer and related networks."""

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU,
                 drop=0.0):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x):
        x = self.fc1(x)
        x = self.act(x)
        x = self.drop1(x)
        x = self.fc2(x)
        x = self.drop2(x)
        return x


class Block(nn.Module):
    def __init__(self, dim, mlp_ratio=4.0, drop=0.1, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm = norm_layer(dim)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), drop=drop)

    def forward(self, x):
        return x + self.mlp(self.norm(x))


class MlpClassifier(nn.Module):
    def __init__(self, in_dim=16, dim=32, depth=2, num_classes=4):
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.blocks = nn.Sequential(*[Block(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):  # x: [B, N, in_dim]
        x = self.blocks(self.embed(x))
        x = self.norm(x).mean(dim=1)
        return self.head(x)


torch.manual_seed(0)
rng = np.random.RandomState(4)
directions = rng.randn(4, 16)
labels = rng.randint(0, 4, size=512)
tokens = rng.randn(512, 8, 16) + 0.5 * directions[labels][:, None, :]
x_all = torch.tensor(tokens, dtype=torch.float32)
y_all = torch.tensor(labels, dtype=torch.int64)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_all, y_all),
                                     batch_size=64, shuffle=True)

model = MlpClassifier()
optimizer = optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
criterion = nn.CrossEntropyLoss(label_smoothing=0.1)

model.eval()
with torch.no_grad():
    print(f"first_loss {criterion(model(x_all), y_all).item():.6g}")
for epoch in range(args.epochs):
    model.train()
    for xb, yb in loader:
        loss = criterion(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        logits = model(x_all)
        eval_loss = criterion(logits, y_all).item()
        acc = (logits.argmax(dim=-1) == y_all).float().mean().item()
    print(f"epoch {epoch + 1} loss {eval_loss:.4f} acc {acc:.3f}")
print(f"final_loss {eval_loss:.6g}")
