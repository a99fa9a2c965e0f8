"""`derta-mlx train --ranks N | --hosts FILE`: start a data-parallel run.

Across Macs (`--hosts`) this builds the `mlx.launch` command line and streams its output. On
one machine (`--ranks N`, ring backend) it starts the N ranks itself, as `mlx.launch` would
(MLX_RANK and a loopback MLX_HOSTFILE), because mlx.launch's output pass-through polls an
always-writable pipe and kept both cores of a 2-core machine busy, leaving the ranks little.
Each local rank gets an equal share of the cores for its BLAS. When a rank ends badly (killed,
crashed, lost its Mac) the run says so in plain words with the resume command. The training
itself is the ordinary `derta-mlx train` in every rank (see distributed.py).
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from derta_mlx.common.errors import UserError
from derta_mlx.train.checkpoint import latest_checkpoint
from derta_mlx.train.rundir import read_status, write_status

_RANK_ENDED = re.compile(r"Node with rank (\d+) (?:exited with code (-?\d+)|was killed)")
KILLED = "killed"  # the launcher's "was killed": a remote rank it ended, or one lost with its Mac


def _ended(code) -> str:
    if code == KILLED:
        return "was killed"
    return f"ended with signal {-code}" if code < 0 else f"ended with exit code {code}"


def strip_launch_flags(argv: List[str]) -> List[str]:
    """The train arguments without --ranks/--hosts/--backend (each rank runs plain `train`)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--ranks", "--hosts", "--backend"):
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def count_hosts(hostfile: str) -> int:
    """Ranks in an mlx.launch hostfile: a JSON list with one {"ssh": ..., "ips": [...]} per Mac."""
    import json

    try:
        hosts = json.loads(Path(hostfile).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{hostfile}: no such hostfile (see docs/training.md, 'Training on several Macs')") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{hostfile}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{hostfile}:{exc.lineno}: not JSON ({exc.msg}); a hostfile is a list of "
                        '{"ssh": "mac1.local", "ips": ["10.0.0.1"]}') from None
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, dict) and "ssh" in h for h in hosts):
        raise UserError(f'{hostfile}: expected a JSON list of {{"ssh": HOST, "ips": [IP, ...]}}, one per Mac')
    return len(hosts)


def blas_threads(ranks: int) -> int:
    """BLAS threads per rank when `ranks` processes share this machine's cores: more threads
    than cores make OpenBLAS's workers spin against each other."""
    return max(1, (os.cpu_count() or 1) // ranks)


def launch_command(train_args: List[str], ranks: Optional[int], hostfile: Optional[str], backend: str,
                   program: Optional[List[str]] = None) -> List[str]:
    """The mlx.launch command line that runs `derta-mlx train TRAIN_ARGS` (or `program`) in
    every rank."""
    # mlx.launch's entry point, run by this interpreter (the console script may be off PATH).
    # It ignores Ctrl-C so that it keeps passing output through while the ranks stop cleanly:
    # they set their own handler (a checkpoint at the end of the step), rank 0 reports.
    launcher = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "from mlx._distributed_utils.launch import main; main()")
    command = [sys.executable, "-c", launcher, "--backend", backend]
    if hostfile:
        if not Path(hostfile).is_file():
            raise UserError(f"{hostfile}: no such hostfile (see docs/training.md, 'Training on several Macs')")
        command += ["--hostfile", hostfile]
    else:
        command += ["-n", str(ranks), "--env", f"OPENBLAS_NUM_THREADS={blas_threads(ranks)}"]
    return command + ["--", *(program or [sys.executable, "-m", "derta_mlx", "train", *train_args])]


def _free_ports(n: int) -> List[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_local(program: List[str], ranks: int, stdout=None, env: Optional[dict] = None) -> Tuple[Dict[int, int], int]:
    """Run `program` as `ranks` ring-backend ranks on this machine; ({rank: exit code} of the
    ranks that ended badly or were ended, in the order they did, 0 or 1 overall). The ranks
    write to this process's stdout/stderr (or `stdout`). When one fails the others are ended,
    as mlx.launch does: they would wait for it forever in the next all-reduce."""
    hosts = [[f"127.0.0.1:{port}"] for port in _free_ports(ranks)]
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="derta-ranks-", delete=False) as f:
        json.dump(hosts, f)
    env = {**os.environ, **(env or {}), "MLX_HOSTFILE": f.name}
    env.setdefault("OPENBLAS_NUM_THREADS", str(blas_threads(ranks)))
    processes = [subprocess.Popen(program, env={**env, "MLX_RANK": str(rank)}, stdin=subprocess.DEVNULL,
                                  stdout=stdout) for rank in range(ranks)]
    ended: Dict[int, int] = {}
    try:
        while any(p.poll() is None for p in processes):
            for rank, p in enumerate(processes):
                if p.returncode not in (None, 0) and rank not in ended:
                    ended[rank] = p.returncode
                    if p.returncode == 130:  # rank 0's clean stop: the others are past the barrier
                        continue
                    for other in processes:
                        if other.poll() is None:
                            other.terminate()
            time.sleep(0.1)
        for rank, p in enumerate(processes):
            if p.returncode != 0 and rank not in ended:
                ended[rank] = p.returncode
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
        os.unlink(f.name)
    return ended, 1 if ended else 0


def _run_launcher(command: List[str]) -> Tuple[Dict[int, int], int]:
    """mlx.launch `command`, its output passed through; ({rank: exit code} of ranks that
    ended badly, as its warnings say, the launcher's exit code)."""
    ended = {}
    # A pipe we never write to, not /dev/null: the launcher select()s on its stdin with a 0.1 s
    # timeout, and /dev/null is always readable, so it never waited.
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        sys.stderr.write(line)
        sys.stderr.flush()
        match = _RANK_ENDED.search(line)
        if match:
            ended[int(match.group(1))] = int(match.group(2)) if match.group(2) else KILLED
    process.wait()
    return ended, process.returncode


def run_ranks(train_args: List[str], run_dir: Path, ranks: Optional[int], hostfile: Optional[str],
              backend: str = "ring") -> int:
    """Start the ranks, and explain a rank that ended badly."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the ranks (see above)
    try:
        if hostfile or backend != "ring":
            ended, returncode = _run_launcher(launch_command(train_args, ranks, hostfile, backend))
        else:
            ended, returncode = run_local([sys.executable, "-m", "derta_mlx", "train", *train_args], ranks)
    finally:
        signal.signal(signal.SIGINT, previous)
    status = read_status(run_dir)
    launch = f"--hosts {hostfile}" if hostfile else f"--ranks {ranks}"
    # A clean stop (Ctrl-C, or SIGINT to rank 0): rank 0 saved, exits 130 and says so.
    if ended.get(0) == 130 and status.get("state") == "stopped":
        print(f"Resume on the same ranks with: derta-mlx train {launch} --resume {run_dir}", file=sys.stderr)
        return 130
    failed = {rank: code for rank, code in ended.items() if code != 0}
    if not failed and returncode == 0:
        return 0
    if failed and all(code == 2 for code in failed.values()):
        return 2  # a bad setting: every rank has already said what is wrong
    # The cause: a rank killed by a signal (not the SIGTERM that ends the others), else the first
    # that failed; a rank that lost its peer exits 1 ("connection to a peer was lost"), maybe first.
    signalled = [r for r, c in failed.items() if c == KILLED or (c < 0 and c != -15)]
    cause = next(iter(signalled), next((r for r, c in failed.items() if c not in (-15, KILLED)), next(iter(failed), None)))
    what = f"mlx.launch exited with code {returncode}" if cause is None else f"rank {cause} {_ended(failed[cause])}"
    if status.get("state") == "running":  # rank 0 was terminated mid-run and could not say so
        write_status(run_dir, "failed", error=f"data-parallel run stopped: {what}")
    checkpoint = latest_checkpoint(run_dir) if (run_dir / "config.yaml").is_file() else None
    where = f"the last checkpoint is step {checkpoint.step}" if checkpoint else "no checkpoint was written yet"
    print(f"derta-mlx: error: the data-parallel run stopped: {what}; {where}.", file=sys.stderr)
    if checkpoint:
        print(f"Resume with: derta-mlx train {launch} --resume {run_dir}", file=sys.stderr)
    return 1
