"""The seed program (/work/tools/SEED.py) made runnable: the classic 10-20-1 regressor with
``torch.relu``, MSELoss and SGD(lr=0.01), trained from a DataLoader and run under ``no_grad`` on a
test loader. The only additions are the data (synthetic linear targets with noise), the loaders and
the loss printing."""
import argparse

import numpy as np

from examples_backend import torch, nn, optim, F

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=100)
args = parser.parse_args()

torch.manual_seed(0)
rng = np.random.RandomState(12)
X = rng.randn(288, 10).astype(np.float32)
y = (X @ rng.randn(10, 1) + 0.1 * rng.randn(288, 1)).astype(np.float32)
train_loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(torch.from_numpy(X[:256]), torch.from_numpy(y[:256])),
    batch_size=32, shuffle=True)
test_loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(torch.from_numpy(X[256:]), torch.from_numpy(y[256:])),
    batch_size=32)


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.fc1 = nn.Linear(10, 20)
        self.fc2 = nn.Linear(20, 1)

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        x = self.fc2(x)
        return x


net = Net()
criterion = nn.MSELoss()
optimizer = optim.SGD(net.parameters(), lr=0.01)
for epoch in range(args.epochs):
    epoch_loss = 0.0
    for i, (inputs, labels) in enumerate(train_loader):
        outputs = net(inputs)
        loss = criterion(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        epoch_loss += loss.item() * inputs.shape[0]
    if epoch == 0:
        print(f"first_loss {epoch_loss / 256:.6g}")
test_loss = 0.0
with torch.no_grad():
    for i, (inputs, labels) in enumerate(test_loader):
        outputs = net(inputs)
        print(outputs)
        test_loss += criterion(outputs, labels).item() * inputs.shape[0]
print(f"final_loss {test_loss / 32:.6g}")
