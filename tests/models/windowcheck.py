"""Shared check for models trained on windows (TIGER, GenRec training=windows)."""
import torch


def window_loss_and_prefix_losses(model):
    """(loss of one window with 6 targets, mean of the 6 losses of its prefixes trained
    separately: later items blanked, one target each). Block-causal attention makes them equal."""
    seqs = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    targets = torch.tensor([[0, 0, 4, 5, 6, 7, 8, 9]])
    users = torch.tensor([2])
    with torch.no_grad():
        whole = model.loss({"seqs": seqs, "targets": targets, "users": users})
        parts = []
        for p in range(2, 8):
            s, t = seqs.clone(), torch.zeros_like(targets)
            s[0, p + 1:] = 0
            t[0, p] = targets[0, p]
            parts.append(model.loss({"seqs": s, "targets": t, "users": users}))
    return whole, torch.stack(parts).mean()
