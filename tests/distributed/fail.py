"""Rank 1 raises while rank 0 waits in a collective: every rank must exit non-zero promptly
(fastmlp.distributed.init installs an excepthook that aborts the MPI job)."""
import numpy as np

import fastmlp.distributed as dist

dist.init()
if dist.get_rank() == 1:
    raise RuntimeError("rank 1 fails on purpose")
dist.all_reduce(np.ones(4, np.float32))  # never completes: rank 1 is gone
dist.barrier()
