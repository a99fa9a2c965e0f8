"""`derta-mlx train --ranks N | --hosts FILE`: start a data-parallel run through `mlx.launch`.

This only builds the `mlx.launch` command line, streams its output and, when a rank ends
badly (killed, crashed, lost its Mac), says so in plain words with the resume command: the
launcher itself exits 0 and leaves only a warning. The training itself is the ordinary
`derta-mlx train` in every rank (see distributed.py).
"""

import re
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from .errors import UserError

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
        raise UserError(f"{hostfile}: no such hostfile (see README, 'Training on several Macs')") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{hostfile}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{hostfile}:{exc.lineno}: not JSON ({exc.msg}); a hostfile is a list of "
                        '{"ssh": "mac1.local", "ips": ["10.0.0.1"]}') from None
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, dict) and "ssh" in h for h in hosts):
        raise UserError(f'{hostfile}: expected a JSON list of {{"ssh": HOST, "ips": [IP, ...]}}, one per Mac')
    return len(hosts)


def launch_command(train_args: List[str], ranks: Optional[int], hostfile: Optional[str], backend: str) -> List[str]:
    # mlx.launch's entry point, run by this interpreter (the console script may be off PATH).
    # It ignores Ctrl-C so that it keeps passing output through while the ranks stop cleanly:
    # they set their own handler (a checkpoint at the end of the step), rank 0 reports.
    launcher = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "from mlx._distributed_utils.launch import main; main()")
    command = [sys.executable, "-c", launcher, "--backend", backend]
    if hostfile:
        if not Path(hostfile).is_file():
            raise UserError(f"{hostfile}: no such hostfile (see README, 'Training on several Macs')")
        command += ["--hostfile", hostfile]
    else:
        command += ["-n", str(ranks)]
    return command + ["--", sys.executable, "-m", "derta_mlx", "train", *train_args]


def run_ranks(train_args: List[str], run_dir: Path, ranks: Optional[int], hostfile: Optional[str],
              backend: str = "ring") -> int:
    """Run the launcher, pass its output through, and explain a rank that ended badly."""
    import signal

    from .rundir import read_status, write_status

    command = launch_command(train_args, ranks, hostfile, backend)
    ended = {}
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the ranks (see above)
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in process.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            match = _RANK_ENDED.search(line)
            if match:
                ended[int(match.group(1))] = int(match.group(2)) if match.group(2) else KILLED
        process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    status = read_status(run_dir)
    launch = f"--hosts {hostfile}" if hostfile else f"--ranks {ranks}"
    # A clean stop (Ctrl-C, or SIGINT to rank 0): rank 0 saved, exits 130 and says so.
    if ended.get(0) == 130 and status.get("state") == "stopped":
        print(f"Resume on the same ranks with: derta-mlx train {launch} --resume {run_dir}", file=sys.stderr)
        return 130
    failed = {rank: code for rank, code in ended.items() if code != 0}
    if not failed and process.returncode == 0:
        return 0
    if failed and all(code == 2 for code in failed.values()):
        return 2  # a bad setting: every rank has already said what is wrong
    # The first rank that failed is the cause; the launcher then terminates the others (-15).
    cause = next((r for r, c in failed.items() if c not in (-15, KILLED)), next(iter(failed), None))
    what = f"mlx.launch exited with code {process.returncode}" if cause is None else f"rank {cause} {_ended(failed[cause])}"
    if status.get("state") == "running":  # rank 0 was terminated mid-run and could not say so
        write_status(run_dir, "failed", error=f"data-parallel run stopped: {what}")
    from .checkpoint import latest_checkpoint

    checkpoint = latest_checkpoint(run_dir) if (run_dir / "config.yaml").is_file() else None
    where = f"the last checkpoint is step {checkpoint.step}" if checkpoint else "no checkpoint was written yet"
    print(f"derta-mlx: error: the data-parallel run stopped: {what}; {where}.", file=sys.stderr)
    if checkpoint:
        print(f"Resume with: derta-mlx train {launch} --resume {run_dir}", file=sys.stderr)
    return 1
