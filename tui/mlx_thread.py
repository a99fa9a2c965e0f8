"""All MLX work of the UI on one long-lived thread, which clears its MLX streams before the process exits.

Textual starts a new thread per worker; MLX keeps some state per thread (streams), so a model
loaded in one worker is used from the same thread in the next. MLX leaves the streams a worker
thread made for that thread to destroy (`mx.clear_streams()`, ml-explore/mlx#4373): left to
the process's own teardown they can abort it after all the work is done ("terminate called
without an active exception", exit 134). So the thread is ours, not a ThreadPoolExecutor's,
and an atexit hook stops it; daemon threads still run while atexit hooks do.
"""

import atexit
import queue
import threading
from concurrent.futures import Future
from contextlib import contextmanager

_jobs: "queue.SimpleQueue" = queue.SimpleQueue()
_start_lock = threading.Lock()
_thread = None
_stopped = False


def _serve() -> None:
    with streams_cleared():
        while (job := _jobs.get()) is not None:
            future, fn, args, kwargs = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # the caller re-raises it from result()
                    future.set_exception(exc)


def _stop() -> None:
    """Let the job in hand finish, then end the thread (it clears its streams on the way out)."""
    global _stopped
    with _start_lock:
        _stopped = True
    _jobs.put(None)
    _thread.join()


def in_mlx_thread(fn, *args, **kwargs):
    """Run fn on the MLX thread and wait for its result (call this from a worker, not the UI)."""
    global _thread
    with _start_lock:
        if _stopped:  # a job queued now would wait forever
            raise RuntimeError("the MLX thread has stopped: the process is exiting")
        if _thread is None:
            _thread = threading.Thread(target=_serve, name="mlx", daemon=True)
            _thread.start()
            atexit.register(_stop)
    future = Future()
    _jobs.put((future, fn, args, kwargs))
    return future.result()


@contextmanager
def streams_cleared():
    """For a thread that runs MLX (this one, a model conversion's worker): clear its streams as it ends."""
    try:
        yield
    finally:
        import mlx.core as mx

        mx.clear_streams()
