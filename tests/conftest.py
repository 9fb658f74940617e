import os

os.environ.setdefault("FACTLAB_PROGRESS", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(0)
