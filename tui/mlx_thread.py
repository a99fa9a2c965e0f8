"""All MLX work of the UI on one long-lived thread.

Textual starts a new thread per worker; MLX keeps some state per thread (streams), so a model
loaded in one worker is used from the same thread in the next.
"""

from concurrent.futures import ThreadPoolExecutor

_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlx")


def in_mlx_thread(fn, *args, **kwargs):
    """Run fn on the MLX thread and wait for its result (call this from a worker, not the UI)."""
    return _EXECUTOR.submit(fn, *args, **kwargs).result()
