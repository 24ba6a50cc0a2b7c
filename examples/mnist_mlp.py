"""MNIST-shaped classifier: 784-256-128-10 MLP with GELU and Dropout, CrossEntropyLoss, AdamW and a
OneCycleLR schedule (the PyTorch-examples / tutorial pattern). The data are synthetic 28x28 "digits":
ten random prototype images plus noise, so the net has something to learn."""
import argparse

import numpy as np

from examples_backend import torch, nn, optim, F

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=128)
args = parser.parse_args()

torch.manual_seed(0)
rng = np.random.RandomState(0)
prototypes = rng.rand(10, 28, 28).astype(np.float32)
labels = rng.randint(0, 10, size=1024)
images = prototypes[labels] + 4.0 * rng.randn(1024, 28, 28).astype(np.float32)
images = (images - images.mean()) / images.std()

train_data = torch.utils.data.TensorDataset(torch.from_numpy(images).unsqueeze(1),
                                            torch.from_numpy(labels).long())
train_loader = torch.utils.data.DataLoader(train_data, batch_size=args.batch_size, shuffle=True)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(28 * 28, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 10)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(0.2)

    def forward(self, x):
        x = self.flatten(x)
        x = self.dropout(self.act(self.fc1(x)))
        x = self.dropout(self.act(self.fc2(x)))
        return self.fc3(x)


model = Net()
criterion = nn.CrossEntropyLoss()
optimizer = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
scheduler = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, epochs=args.epochs,
                                          steps_per_epoch=len(train_loader))

for epoch in range(args.epochs):
    model.train()
    running_loss, correct, seen = 0.0, 0, 0
    for batch_idx, (data, target) in enumerate(train_loader):
        optimizer.zero_grad()
        output = model(data)
        loss = criterion(output, target)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if epoch == 0 and batch_idx == 0:
            print(f"first_loss {loss.item():.6g}")
        running_loss += loss.item() * data.size(0)
        pred = output.argmax(dim=1)
        correct += (pred == target).sum().item()
        seen += data.size(0)
    print(f"epoch {epoch + 1} loss {running_loss / seen:.4f} acc {correct / seen:.3f} "
          f"lr {scheduler.get_last_lr()[0]:.2e}")

model.eval()
with torch.no_grad():
    eval_loss = F.cross_entropy(model(train_data.tensors[0]), train_data.tensors[1]).item()
print(f"final_loss {eval_loss:.6g}")
