"""Smoke test in a real terminal: `derta-mlx tui` under tmux at 80x24, screen to screen, a probe, then quit."""

import shutil
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    """One tmux server of our own (its own socket), so nothing else is touched."""

    def __init__(self, cwd):
        self.socket = f"derta-tui-{uuid.uuid4().hex[:8]}"
        self.cwd = cwd

    def __call__(self, *args) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True,
                              timeout=30).stdout

    def start(self, command: str) -> None:
        self("-f", "/dev/null", "new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", "-c", str(self.cwd), command)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "tui")

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            assert time.monotonic() < deadline, f"{text!r} never appeared; the screen:\n{screen}"
            time.sleep(0.2)

    def keys(self, *keys) -> None:
        self("send-keys", "-t", "tui", *keys)

    def close(self) -> None:
        self("kill-server")


def test_tui_in_tmux_moves_between_screens_and_quits(tmp_path):
    tmux = Tmux(tmp_path)
    # quitting after a probe must exit 0: MLX's worker-thread streams once aborted it (tui/mlx_thread.py)
    command = (f"DERTA_MLX_MODELS_DIR={tmp_path / 'models'} {sys.executable} -m derta_mlx tui --runs runs; "
               "echo TUI-EXIT=$?; sleep 60")
    tmux.start(command)
    try:
        screen = tmux.wait_for("smollm2-135m-4bit")
        assert "Download/prepare" in screen  # the footer
        tmux.keys("F2")
        tmux.wait_for("Launch (F5)")
        tmux.keys("F3")
        tmux.wait_for("0 run(s) in runs/")
        tmux.keys("F4")
        tmux.wait_for("compare with the base")
        assert "•••" in tmux.screen()  # the harmful response is masked
        tmux.keys("tiny-mistral", "F5")  # the model field has the focus; a probe runs on the MLX thread
        tmux.wait_for("100% 5 positions", 180)
        tmux.keys("F1")  # help lists every key, over the screen
        tmux.wait_for("Everywhere")
        tmux.keys("Escape", "F3")
        tmux.wait_for("0 run(s) in runs/")
        tmux.keys("1")  # no text field has the cursor on Runs: the number keys switch screens
        tmux.wait_for("GGUF import")
        assert "F1" in tmux.screen() and "Help" in tmux.screen()  # the footer fits 80 columns
        tmux.keys("C-q")
        tmux.wait_for("TUI-EXIT=0", 20)
    finally:
        tmux.close()
