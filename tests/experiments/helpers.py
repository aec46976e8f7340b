"""The `local` reference of the executor tests runs in a fresh process, as every worker of the other executors
does: a long-lived test process that computed other things first was seen to round one crafting diagnostic
(`matching_loss_start`) differently in its last digit (float32), with the same models, inputs and thread count."""
import os
import subprocess
import sys


def padhash_in_fresh_process(argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "padhash", *map(str, argv)], env=env, capture_output=True,
                          text=True)
