"""Started by torchrun from tests/test_evaluate.py: `python -m infinity_core evaluate ARGS`, with
rank 1 changed by the first argument: `slow` (each row it records comes a second late, so rank 0
is done first and must wait for it) or `dies` (it dies hard, by os._exit as a killed process
would, right after recording its first row)."""
import os
import sys
import time

from infinity_core.cli import main
from infinity_core.evaluate.folder import TableWriter

mode, args = sys.argv[1], sys.argv[2:]
if os.environ["RANK"] == "1":
    record = TableWriter.append

    def changed(self, row):
        if mode == "slow":
            time.sleep(1.0)
        record(self, row)
        if mode == "dies":
            os._exit(3)

    TableWriter.append = changed

sys.exit(main(["evaluate", *args]))
