"""numba's first parallel call must not change torch's thread count (numba's OpenMP layer sets OpenMP's thread
count to NUMBA_NUM_THREADS when it starts, and torch reads its own from there): checked in a fresh process, since
numba starts its threading layer once per process."""
import os
import subprocess
import sys

# A fresh process: torch on 1 thread, a float32 sum long enough to be split across threads, then the first Hamming
# search of the process (numba's first parallel call), then the same sum again.
SCRIPT = """
import torch
from padhash.metrics import map_at_k
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
x = torch.randn(1 << 22, generator=g)
first = x.sum().item()
codes = torch.randint(0, 2, (40, 16), generator=g).float() * 2 - 1
labels = torch.eye(3)[torch.randint(0, 3, (40,), generator=g)]
map_at_k(codes[:8], codes, labels[:8], labels, 10)
print(torch.get_num_threads(), x.sum().item() == first)
"""


def test_the_first_hamming_search_keeps_torchs_thread_count():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "True"]  # still 1 thread, and the sum rounds as before the search
