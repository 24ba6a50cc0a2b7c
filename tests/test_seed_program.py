"""The seed program runs verbatim with the imports swapped (fewer epochs)."""
import contextlib
import io

import numpy as np

SEED_PROGRAM = '''
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
for epoch in range(EPOCHS):
    for i, (inputs, labels) in enumerate(train_loader):
        outputs = net(inputs)
        loss = criterion(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
with torch.no_grad():
    for i, (inputs, _) in enumerate(test_loader):
        outputs = net(inputs)
        print(outputs)
'''


def make_loaders(torch, DataLoader, TensorDataset):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((10, 1)).astype(np.float32)
    x = rng.standard_normal((512, 10)).astype(np.float32)
    y = (x @ w + 0.5).astype(np.float32)
    xt = rng.standard_normal((8, 10)).astype(np.float32)
    train = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=64,
                       shuffle=True)
    test = DataLoader(TensorDataset(torch.from_numpy(xt), torch.zeros(8, 1)), batch_size=4)
    return train, test, x, y


def run_program(epochs):
    import fastmlp as torch
    import fastmlp.nn as nn
    import fastmlp.optim as optim
    from fastmlp.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    train_loader, test_loader, x, y = make_loaders(torch, DataLoader, TensorDataset)
    ns = dict(torch=torch, nn=nn, optim=optim, train_loader=train_loader,
              test_loader=test_loader, EPOCHS=epochs)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(SEED_PROGRAM, ns)
    return ns, out.getvalue(), x, y


def test_seed_program_runs_and_learns():
    ns, printed, x, y = run_program(epochs=20)
    assert printed.count("tensor(") == 2  # two test batches printed
    assert "grad_fn" not in printed  # printed under no_grad
    net, torch = ns["net"], ns["torch"]
    with torch.no_grad():
        pred = net(torch.from_numpy(x)).numpy()
    base = ((y - y.mean()) ** 2).mean()
    assert ((pred - y) ** 2).mean() < 0.2 * base  # it trained
    assert isinstance(ns["loss"].item(), float)


def test_seed_program_alternative_imports():
    from fastmlp import nn  # noqa: F401  (``from fastmlp import nn`` works too)
    import fastmlp.utils.data

    assert fastmlp.utils.data.DataLoader is not None
