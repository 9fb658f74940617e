"""Task samplers: pure torch, batched, seeded by an explicit `torch.Generator`."""
