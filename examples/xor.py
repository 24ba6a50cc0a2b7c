"""XOR: the smallest problem a linear model cannot solve. A 2-8-1 net with Tanh hidden units and a
Sigmoid output, BCELoss, plain SGD, full batch of the four points."""
import argparse

from examples_backend import torch, nn, optim, F

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2000)
args = parser.parse_args()

torch.manual_seed(0)
X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = torch.tensor([[0.0], [1.0], [1.0], [0.0]])


class XOR(nn.Module):
    def __init__(self):
        super(XOR, self).__init__()
        self.hidden = nn.Linear(2, 8)
        self.output = nn.Linear(8, 1)

    def forward(self, x):
        x = torch.tanh(self.hidden(x))
        return torch.sigmoid(self.output(x))


model = XOR()
loss_func = nn.BCELoss()
optimizer = optim.SGD(model.parameters(), lr=0.5)

for epoch in range(args.epochs):
    optimizer.zero_grad()
    y_hat = model(X)
    loss = loss_func(y_hat, Y)
    loss.backward()
    optimizer.step()
    if epoch == 0:
        print(f"first_loss {loss.item():.6g}")
    if (epoch + 1) % 500 == 0:
        print(f"epoch {epoch + 1} loss {loss.item():.5f}")

with torch.no_grad():
    pred = model(X)
    print("predictions", [round(p, 3) for p in pred.view(-1).tolist()])
    print(f"final_loss {loss_func(pred, Y).item():.6g}")
