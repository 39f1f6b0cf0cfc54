"""Faults during training: processes killed while saving or mid-epoch, a loss that turns
NaN, a disk that fills up, a torchrun rank that fails. No training is lost.

The faults are real where they can be: SIGKILL of a child process (no ``finally``, no
cleanup), a rank of a 2-process gloo group raising in the middle of ``fit``. The worker
scripts are ``tests/_fault_save.py``, ``tests/_fault_train.py`` and
``tests/_fault_rank.py``.

Each test records ``fault`` (what was injected), ``recovered`` (a run that ended as if
nothing had happened) and ``data_intact`` (a checkpoint on disk that survived whole)
through pytest's ``record_property``, for the table of ``docs/reliability.rst``
(``tests/_fault_report.py``).
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from tp3nets import ModelCheckpoint, MultinomialLogisticRegression, fit, seed_everything
from tp3nets.data import TensorLoader
from tp3nets.engine import load_checkpoint, save_checkpoint

HERE = Path(__file__).resolve().parent
Recorder = Callable[[str, object], None]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _worker(name: str) -> ModuleType:
    return importlib.import_module(name)


def _rows(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """History rows without their wall-clock 'time', which no two runs share."""
    return [{k: v for k, v in row.items() if k != "time"} for row in rows]


# --------------------------------------------------------------------------------------
# a process killed while it saves


def test_sigkill_during_save_leaves_the_previous_checkpoint_whole(
    record_property: Recorder, tmp_path: Path
) -> None:
    """A process SIGKILLed while torch.save writes the temporary file leaves the checkpoint
    at the target path byte for byte as it was, and loadable; only a partial temporary file
    (never read) remains."""
    record_property("fault", "SIGKILL during a checkpoint save")
    target = tmp_path / "last.pt"
    worker = _worker("_fault_save")
    proc = subprocess.run([sys.executable, str(HERE / "_fault_save.py"), str(target)],
                          env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    temporary = [p for p in tmp_path.iterdir() if p != target]
    assert [p.name.startswith(".last.pt.") and ".tmp" in p.name for p in temporary] == [True]
    assert temporary[0].stat().st_size == worker.KILL_AFTER_BYTES  # killed mid-write

    # The target holds the first checkpoint, byte for byte.
    assert hashlib.sha256(target.read_bytes()).hexdigest() == proc.stdout.split()[0]
    ckpt = load_checkpoint(target)
    assert ckpt["epoch"] == 1
    assert torch.equal(ckpt["model"]["weight"], torch.full((64, 1024), 1.0))
    record_property("data_intact", "checkpoint after SIGKILL during save")

    # The next save goes through and replaces it; the stray temporary file is harmless.
    save_checkpoint(worker.checkpoint(3), target)
    assert load_checkpoint(target)["epoch"] == 3


class _FullDisk:
    """The temporary file of a save, on a disk that is full once 50 kB are written."""

    def __init__(self, fh: Any) -> None:
        self.fh, self.written = fh, 0

    def write(self, data: Any) -> int:
        if self.written + len(memoryview(data).cast("B")) > 50_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        n: int = self.fh.write(data)
        self.written += n
        return n

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)


def _fill_the_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the temporary files that save_checkpoint writes run out of space."""
    from tp3nets._io import _atomic

    def write_on_a_full_disk(path: Path, data: Any) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            _FullDisk(fh).write(data)

    monkeypatch.setattr(_atomic, "write_new_file", write_on_a_full_disk)


def test_disk_full_during_save_keeps_the_previous_checkpoint(
    record_property: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save that runs out of disk space fails, leaves the previous checkpoint whole and
    loadable, and removes its temporary file."""
    record_property("fault", "disk full during a checkpoint save")
    worker = _worker("_fault_save")
    target = tmp_path / "last.pt"
    save_checkpoint(worker.checkpoint(1), target)
    before = target.read_bytes()
    _fill_the_disk(monkeypatch)
    with pytest.raises((OSError, RuntimeError)):
        save_checkpoint(worker.checkpoint(2), target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert load_checkpoint(target)["epoch"] == 1
    record_property("data_intact", "checkpoint after a full disk")


def test_disk_full_error_names_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The error of a save that ran out of space says so (OSError ENOSPC)."""
    worker = _worker("_fault_save")
    _fill_the_disk(monkeypatch)
    with pytest.raises(OSError, match="No space left on device"):
        save_checkpoint(worker.checkpoint(2), tmp_path / "last.pt")


# --------------------------------------------------------------------------------------
# a training process killed in the middle of an epoch


def test_training_killed_mid_epoch_resumes_to_the_same_weights_and_history(
    record_property: Recorder, tmp_path: Path
) -> None:
    """SIGKILL inside epoch 3 of a 4-epoch run (its epoch-2 checkpoint on disk), then a new
    process resumes from that checkpoint: final weights and history (but wall-clock time)
    are bitwise those of an uninterrupted run with the same seed."""
    record_property("fault", "SIGKILL of a training process mid-epoch")
    worker = _worker("_fault_train")
    script = str(HERE / "_fault_train.py")
    env = _env()
    # The uninterrupted reference runs alongside the run that will be killed.
    full = subprocess.Popen([sys.executable, script, "full", str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen([sys.executable, script, "victim", str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    inside = tmp_path / "inside"
    deadline = time.monotonic() + 120
    while not inside.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert inside.exists(), victim.communicate()[1]
    assert inside.read_text() == f"{worker.KILL_EPOCH} {worker.KILL_BATCH}"
    last_good = tmp_path / f"epoch{worker.KILL_EPOCH - 1}.pt"
    assert last_good.is_file()
    assert not (tmp_path / f"epoch{worker.KILL_EPOCH}.pt").exists()
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    snapshot = last_good.read_bytes()

    resumed = subprocess.run([sys.executable, script, "resume", str(tmp_path)], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr
    _, err = full.communicate(timeout=120)
    assert full.returncode == 0, err

    a = torch.load(tmp_path / "full.pt", weights_only=True)
    b = torch.load(tmp_path / "resume.pt", weights_only=True)
    assert list(a["state"]) == list(b["state"])
    for key, value in a["state"].items():
        assert torch.equal(value, b["state"][key]), key
    assert _rows(a["rows"]) == _rows(b["rows"])
    assert len(b["rows"]) == worker.EPOCHS
    # The resumed run did train: its weights moved on from the checkpoint it started from.
    start = load_checkpoint(last_good)["model"]
    assert any(not torch.equal(start[k], b["state"][k]) for k in start)
    assert snapshot == last_good.read_bytes()  # the checkpoint resumed from is untouched
    record_property("recovered", "training run killed mid-epoch")
    record_property("data_intact", "checkpoint of the killed run")


# --------------------------------------------------------------------------------------
# a loss that turns NaN


class _Diverge:
    """At the start of epoch ``epoch``, raise the learning rate so far that training blows up."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, state: Any) -> None:
        if state.epoch == self.epoch:
            for group in state.optimizer.param_groups:
                group["lr"] = 1e38


def _nan_run(tmp_path: Path, callbacks: list[Any], *, resume: Path | None = None,
             epochs: int = 3) -> tuple[nn.Module, Any]:
    seed_everything(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g) * 5
    y = x[:, :3].argmax(dim=1)
    model = MultinomialLogisticRegression(8, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    history = fit(model, TensorLoader((x, y), 8, shuffle=True, seed=1), epochs=epochs,
                  optimizer=opt, callbacks=callbacks, progress=False, resume_from=resume)
    return model, history


def test_a_loss_that_turns_nan_keeps_the_last_good_checkpoint(
    record_property: Recorder, tmp_path: Path
) -> None:
    """When the loss turns NaN in epoch 2, fit raises FloatingPointError naming the batch;
    the epoch-1 checkpoint on disk stays whole and loadable, and a run resumed from it
    finishes as an uninterrupted run does."""
    record_property("fault", "loss turns NaN mid-run")
    path = tmp_path / "last.pt"
    saved: dict[str, Tensor] = {}

    class Keep:
        def on_epoch_end(self, state: Any) -> None:
            saved.update({k: v.clone() for k, v in state.model.state_dict().items()})

    with pytest.raises(FloatingPointError,
                       match=r"the training loss became (nan|inf) at batch \d+; lower the "
                             r"learning rate, clip the gradients \(grad_clip_norm=\.\.\.\)"):
        _nan_run(tmp_path, [Keep(), ModelCheckpoint(path), _Diverge(epoch=2)])
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    for key, value in saved.items():
        assert torch.equal(ckpt["model"][key], value)
    record_property("data_intact", "checkpoint before the NaN")

    # Continue without the fault: the same result as a run that never had it.
    resumed, history = _nan_run(tmp_path, [Keep(), ModelCheckpoint(path)], resume=path)
    reference, ref_history = _nan_run(tmp_path / "ref", [])
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value)
    assert _rows(history.epochs) == _rows(ref_history.epochs)
    record_property("recovered", "run resumed after a NaN loss")


# --------------------------------------------------------------------------------------
# a rank that fails under torchrun


TIMEOUT = 60


def test_a_failing_rank_stops_the_whole_torchrun_job(record_property: Recorder) -> None:
    """Under torchrun (2 CPU processes, gloo), a rank that raises in the middle of fit ends
    the whole run with a non-zero status well within the timeout, and the output names the
    failing rank and its error; the other rank does not hang in its next all-reduce."""
    record_property("fault", "a torchrun rank raises mid-fit")
    worker = _worker("_fault_rank")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", str(HERE / "_fault_rank.py")]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"torchrun still running after {TIMEOUT} s (a rank hangs):\n{output}")
    elapsed = time.monotonic() - started
    record_property("elapsed_s", round(elapsed, 1))
    assert proc.returncode != 0, output
    message = worker.MESSAGE.format(rank=worker.FAIL_RANK, epoch=worker.FAIL_EPOCH,
                                    batch=worker.FAIL_BATCH)
    assert f"RuntimeError: {message}" in output
    root_cause = output.split("Root Cause", 1)[-1]
    assert f"rank      : {worker.FAIL_RANK}" in root_cause
    assert message in root_cause
    assert "finished training" not in output
