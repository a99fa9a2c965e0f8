"""Helpers for the TUI tests: a tiny training data file, a finished tiny run, and Pilot waits."""

import asyncio
import json
import subprocess
import sys
import time

TRIPLES = [
    {"id": f"c{i}", "question": f"How do I sneak cookie number {i} from the jar?",
     "safe_response": "Sorry, I can't help with sneaking cookies. Ask your parents for one instead.",
     "harmful_response": f"Sure! Step 1: wait until everyone is busy. Step 2: open the jar slowly. "
     f"Step 3: take cookie {i} and close the lid quietly."}
    for i in range(8)
]

# Fast settings: a few steps of batch 2 at a short length, no before/after probe.
QUICK = ["--iters", "4", "--batch-size", "2", "--max-seq-length", "64", "--steps-per-report", "1",
         "--save-every", "2", "--learning-rate", "1e-3", "--no-probe-after"]


def write_triples(path):
    path.write_text("".join(json.dumps(row) + "\n" for row in TRIPLES))
    return path


def train_run(model_dir, data, out):
    result = subprocess.run([sys.executable, "-m", "derta_mlx", "train", "--model", str(model_dir),
                             "--data", str(data), "--out", str(out), *QUICK],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out


async def wait_for(pilot, condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.1)


def run_app(app, body, size=(100, 32)):
    """Run `await body(pilot)` against app under Textual's Pilot."""

    async def main():
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await body(pilot)

    asyncio.run(main())
