import os
import sys
from pathlib import Path

# The tests import the core as a package from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

# The tests run tiny models, where thread start-up costs more than it saves (3x slower on 2 cores).
torch.set_num_threads(1)

# The browser tests (tests/e2e) need a real ComfyUI checkout, which CI cannot install: they are
# collected only when INFINITYSTYLE_COMFYUI names one.
collect_ignore = [] if os.environ.get("INFINITYSTYLE_COMFYUI") else ["e2e"]
