import sys
from pathlib import Path

# The tests import the core as a package from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

# The tests run tiny models, where thread start-up costs more than it saves (3x slower on 2 cores).
torch.set_num_threads(1)
