"""A Lightning DDP run (2 CPU processes, gloo) under trainsound.lightning.Sonify; run as a script.

``python lightning_ddp_worker.py PORT`` — Lightning's DDP launcher starts rank 1 by running this file again.
"""

from __future__ import annotations

import sys
import warnings

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from trainsound.lightning import Sonify

warnings.simplefilter("ignore")


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(self.parameters(), lr=0.1)


if __name__ == "__main__":
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[Sonify(run="ddp", port=int(sys.argv[1]))])
    trainer.fit(Tiny(), loader)
