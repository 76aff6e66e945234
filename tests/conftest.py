import sys
from pathlib import Path

# The tests import the core as a package from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
