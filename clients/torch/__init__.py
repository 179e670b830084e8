"""The PyTorch client: :func:`trainsound.watch` and its parts (steps, frames, units, loss, activation
spectra, torch.distributed). Its modules import PyTorch; the package itself imports nothing.
"""
