"""The TUI's MLX thread: one thread for every call, errors passed back, streams cleared at exit."""

import subprocess
import sys
import threading

import pytest

from tui.mlx_thread import in_mlx_thread


def test_every_call_runs_on_the_same_thread_and_errors_come_back():
    names = {in_mlx_thread(lambda: threading.current_thread().name) for _ in range(3)}
    assert names == {"mlx"}
    with pytest.raises(ZeroDivisionError):
        in_mlx_thread(lambda: 1 / 0)
    assert in_mlx_thread(lambda x, y=0: x + y, 2, y=3) == 5  # and the thread is still serving


def test_the_thread_clears_its_streams_before_the_process_exits(tmp_path):
    """MLX leaves a worker thread's streams to that thread (mx.clear_streams); left to the process's
    teardown they can abort it with exit 134 after the work is done."""
    log = tmp_path / "cleared.txt"
    code = f"""
import threading
import mlx.core as mx
real = mx.clear_streams
def clear():
    real()
    with open({str(log)!r}, "a") as f:
        f.write(threading.current_thread().name + "\\n")
mx.clear_streams = clear
from tui.mlx_thread import in_mlx_thread
print(in_mlx_thread(lambda: (mx.ones((8, 8)) @ mx.ones((8, 8))).sum().item()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "512.0"
    assert log.read_text() == "mlx\n"
    assert "terminate called" not in out.stderr


def test_a_call_after_the_thread_stopped_fails_instead_of_waiting_forever():
    code = """
import atexit
def late():  # registered first, so it runs after the MLX thread's own hook has stopped it
    try:
        in_mlx_thread(lambda: 1)
    except RuntimeError as exc:
        print("refused:", exc)
atexit.register(late)
from tui.mlx_thread import in_mlx_thread
print(in_mlx_thread(lambda: 2))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["2", "refused: the MLX thread has stopped: the process is exiting"]
