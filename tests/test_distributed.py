"""fit and evaluate under torchrun: 2 CPU processes (gloo) against a single process."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tp3nets import MultinomialLogisticRegression, evaluate
from tp3nets.data import TensorLoader
from tp3nets.engine import load_checkpoint

WORKER = Path(__file__).with_name("_ddp_worker.py")


def _worker_module() -> Any:
    return importlib.import_module("_ddp_worker")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the worker under torchrun with 2 processes, once for all the tests here."""
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node", "2", str(WORKER), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout}\n{proc.stderr}"
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    return {"out": out, "stdout": proc.stdout, "stderr": proc.stderr, "ranks": ranks}


@pytest.fixture(scope="module")
def single() -> dict[str, Any]:
    """The same runs in this single process, with the same global batch."""
    w = _worker_module()
    data, val = w.make_data(w.N_TRAIN, 0), w.make_data(w.N_VAL, 1)
    model, rows = w.train(TensorLoader(data, w.BATCH, shuffle=True, seed=1), TensorLoader(val, 4))
    dl_model, dl_rows = w.train(DataLoader(TensorDataset(*data), batch_size=w.BATCH),
                                DataLoader(TensorDataset(*val), batch_size=4))
    return {"model": model, "rows": rows, "dl_model": dl_model, "dl_rows": dl_rows, "val": val}


def _close_rows(a: list[dict[str, float]], b: list[dict[str, float]]) -> None:
    assert [sorted(r) for r in a] == [sorted(r) for r in b]
    for ra, rb in zip(a, b, strict=True):
        for k in ra:
            assert ra[k] == pytest.approx(rb[k], rel=1e-5, abs=1e-6), k


@pytest.mark.slow
def test_torchrun_processes_form_a_group_of_two(ddp_run: dict[str, Any]) -> None:
    """fit starts the gloo group from torchrun's environment; ranks 0 and 1 both report."""
    assert [(r["rank"], r["world"]) for r in ddp_run["ranks"]] == [(0, 2), (1, 2)]


@pytest.mark.slow
def test_each_process_gets_its_share_of_every_batch(ddp_run: dict[str, Any]) -> None:
    """Training: 4 of each global batch of 8 per process; evaluation: whole batches in turn."""
    for rank, r in enumerate(ddp_run["ranks"]):
        train_sizes = [n for training, n in r["seen"] if training]
        eval_sizes = [n for training, n in r["seen"] if not training]
        assert train_sizes == [4] * (48 // 8) * 3
        # 21 validation samples in batches of 4: rank 0 takes batches 0, 2, 4; rank 1 takes
        # batches 1, 3 and the last one, of a single sample.
        assert eval_sizes == ([4, 4, 4] if rank == 0 else [4, 4, 1]) * 3


@pytest.mark.slow
def test_distributed_fit_matches_single_process(
    ddp_run: dict[str, Any], single: dict[str, Any]
) -> None:
    """Two processes with half of each global batch end with the single-process weights."""
    r0, r1 = ddp_run["ranks"]
    for key in ("state", "dl_state", "shuffled_state"):  # DDP keeps the ranks identical
        assert all(torch.equal(r0[key][k], r1[key][k]) for k in r0[key])
    for state, model in ((r0["state"], single["model"]), (r0["dl_state"], single["dl_model"])):
        for k, v in model.state_dict().items():
            torch.testing.assert_close(state[k], v, rtol=1e-5, atol=1e-6)
    _close_rows(r0["rows"], single["rows"])
    _close_rows(r0["dl_rows"], single["dl_rows"])
    assert r0["rows"] == r1["rows"]


@pytest.mark.slow
def test_distributed_evaluate_equals_single_process_exactly(
    ddp_run: dict[str, Any], single: dict[str, Any]
) -> None:
    """On 21 samples (odd) the distributed figures equal the single-process ones exactly."""
    model = MultinomialLogisticRegression(8, 3)
    model.load_state_dict(ddp_run["ranks"][0]["state"])
    val = single["val"]
    expected = evaluate(model, TensorLoader(val, 4))
    for r in ddp_run["ranks"]:
        assert r["eval_tensor"] == expected
        assert r["eval_dataloader"] == evaluate(model, DataLoader(TensorDataset(*val),
                                                                  batch_size=4))
    # No duplicates: an accuracy over 21 samples is a multiple of 1/21.
    assert round(expected["acc"] * 21, 9) == round(expected["acc"] * 21)


@pytest.mark.slow
def test_a_stop_asked_on_one_rank_is_in_the_checkpoint(ddp_run: dict[str, Any]) -> None:
    """Rank 1 alone stops after epoch 1: both ranks stop, and rank 0's checkpoint of that
    epoch records the stop (it used to be written before the ranks agreed)."""
    assert [r["stopped_epochs"] for r in ddp_run["ranks"]] == [1, 1]
    assert load_checkpoint(ddp_run["out"] / "stopped.pt")["stop_training"] is True


def test_batchnorm_statistics_agree_across_ranks_after_fit(ddp_run: dict[str, Any]) -> None:
    a, b = (r["bn_buffers"] for r in ddp_run["ranks"])
    assert a.keys() == b.keys()
    assert a
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_list_of_each_rank_s_own_batches_is_its_share(
    ddp_run: dict[str, Any], single: dict[str, Any]
) -> None:
    """Any iterable other than TensorLoader/DataLoader is taken as the rank's own share:
    the two halves evaluate as the whole does in one process."""
    w = _worker_module()
    whole = evaluate(single["model"], TensorLoader(w.make_data(w.N_TRAIN, 0), 4), device="cpu")
    for r in ddp_run["ranks"]:
        for k in whole:
            assert r["eval_own_batches"][k] == pytest.approx(whole[k], rel=1e-6), k


def test_only_rank_zero_prints_and_checkpoints(ddp_run: dict[str, Any]) -> None:
    """One summary line per epoch across both processes; the checkpoint has plain keys."""
    lines = [ln for ln in ddp_run["stdout"].splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in lines] == ["1/3", "2/3", "3/3"] * 3  # three fits
    assert sum("epoch" in ln for ln in ddp_run["stderr"].splitlines()) == 0
    ckpt = load_checkpoint(ddp_run["out"] / "last.pt")
    assert sorted(ckpt["model"]) == ["classifier.bias", "classifier.weight"]
    state = ddp_run["ranks"][0]["state"]
    assert all(torch.equal(ckpt["model"][k], state[k]) for k in state)


# --------------------------------------------------------------------------------------
# Which device and backend a torchrun process picks, with the GPU count simulated.


@pytest.fixture
def torchrun_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    """torchrun's environment for process ``local_rank`` of ``procs`` on a node with
    ``gpus`` CUDA devices (simulated), and the backend ``init_process_group`` was asked for."""
    from tp3nets.engine import _distributed

    started: list[str] = []

    def setup(local_rank: int, procs: int, gpus: int) -> list[str]:
        monkeypatch.setenv("WORLD_SIZE", str(procs))
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(procs))
        monkeypatch.setenv("RANK", str(local_rank))
        monkeypatch.setenv("LOCAL_RANK", str(local_rank))
        monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        monkeypatch.setattr(torch.cuda, "set_device", lambda dev: started.append(f"set {dev}"))
        monkeypatch.setattr(_distributed.dist, "init_process_group",
                            lambda backend, **options: started.append(backend))
        return started

    return setup


def _resolve(device: str | None) -> torch.device:
    from tp3nets.engine import resolve_device

    return resolve_device(device, MultinomialLogisticRegression(8, 3))


def test_torchrun_default_device_is_the_process_s_own_gpu(torchrun_env: Any) -> None:
    """Two processes, two GPUs: rank 1 takes cuda:1 and starts nccl on it."""
    from tp3nets.engine import _distributed

    started = torchrun_env(local_rank=1, procs=2, gpus=2)
    assert _resolve(None) == torch.device("cuda", 1)
    assert _resolve("cuda") == torch.device("cuda", 1)
    _distributed.init_from_env(torch.device("cuda", 1))
    assert started == ["set cuda:1", "nccl"]


@pytest.mark.parametrize("local_rank", [0, 1])
def test_torchrun_with_fewer_gpus_than_processes_runs_on_the_cpu_with_gloo(
    torchrun_env: Any, local_rank: int
) -> None:
    """Two processes, one GPU: both run where the model is (the CPU) and start gloo; rank 0
    says why. No process asks for a GPU it does not have."""
    from tp3nets.engine import _distributed

    started = torchrun_env(local_rank=local_rank, procs=2, gpus=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dev = _resolve(None)
    assert dev == torch.device("cpu")
    said = [str(w.message) for w in caught]
    if local_rank == 0:
        assert len(said) == 1
        assert "2 processes on this node, which has 1 CUDA device" in said[0]
    else:
        assert said == []
    _distributed.init_from_env(dev)
    assert started == ["gloo"]


def test_torchrun_explicit_cpu_on_a_gpu_node_uses_gloo(torchrun_env: Any) -> None:
    """device='cpu' on a node with GPUs: gloo, no CUDA device touched."""
    from tp3nets.engine import _distributed

    started = torchrun_env(local_rank=0, procs=2, gpus=2)
    dev = _resolve("cpu")
    _distributed.init_from_env(dev)
    assert (dev, started) == (torch.device("cpu"), ["gloo"])


def test_torchrun_cuda_without_a_gpu_per_process_is_a_clear_error(torchrun_env: Any) -> None:
    torchrun_env(local_rank=1, procs=2, gpus=1)
    with pytest.raises(ValueError, match=r"one CUDA device per process, but 2 processes "
                       r"share 1 on this node; start fewer processes or pass device='cpu'"):
        _resolve("cuda")


def test_outside_torchrun_nothing_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    from tp3nets.engine import _distributed

    for key in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(_distributed.dist, "init_process_group", lambda *a: pytest.fail("started"))
    assert _distributed.init_from_env(torch.device("cpu")) is False


FAULTS = Path(__file__).with_name("_ddp_faults_worker.py")


def _torchrun(
    mode: str, out: Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **env}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        full_env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", str(FAULTS), mode, str(out)]
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout)


def test_ranks_with_uneven_batches_are_refused_before_the_first_step(
    tmp_path: Path, record_property: Any
) -> None:
    """Rank 0 with 10 batches and rank 1 with 6 would hang in the gradient all-reduce:
    fit refuses before the first step, naming each rank's count."""
    record_property("fault", "torchrun ranks with uneven data")
    proc = _torchrun("uneven", tmp_path, timeout=90)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "different numbers of batches (rank 0 10, rank 1 6)" in output, output


def test_a_stalled_rank_ends_the_run_within_the_timeout(
    tmp_path: Path, record_property: Any
) -> None:
    """A rank that stalls holds the others only for TP3NETS_DIST_TIMEOUT seconds (not
    gloo's 30 minutes); the error names the waiting rank, the rank that stalled and the
    cause."""
    import time

    record_property("fault", "a stalled torchrun rank")
    started = time.monotonic()
    proc = _torchrun("stall", tmp_path, timeout=90, TP3NETS_DIST_TIMEOUT="5")
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "rank 0: waited more than 5 s for the other ranks during epoch 2: rank 1 " \
        "stalled or died (did not reach it)" in output, output
    assert elapsed < 60, elapsed


def test_a_resumed_torchrun_run_is_bitwise_the_uninterrupted_one(
    tmp_path: Path, record_property: Any
) -> None:
    """Batch 15 on 2 ranks (shards of 8 and 7) with dropout: 2 epochs, a checkpoint, and
    a resume to 3 give bitwise the weights of 3 epochs straight on every rank (each rank's
    own RNG state is saved and restored, not rank 0's for all)."""
    record_property("fault", "a torchrun run stopped and resumed (dropout, uneven shards)")
    record_property("recovered", "torchrun resume")
    for mode in ("full", "part", "rest"):
        proc = _torchrun(mode, tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    for r in range(2):
        full = torch.load(tmp_path / f"full-rank{r}.pt", weights_only=True)
        rest = torch.load(tmp_path / f"rest-rank{r}.pt", weights_only=True)
        assert all(torch.equal(full[k], rest[k]) for k in full), r
    ckpt = load_checkpoint(tmp_path / "part.pt")
    assert len(ckpt["rng_ranks"]) == 2
    assert not torch.equal(ckpt["rng_ranks"][0]["torch"], ckpt["rng_ranks"][1]["torch"])


def test_the_collective_timeout_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TP3NETS_DIST_TIMEOUT sets the process group's timeout (default 600 s); a value that
    is not a positive number of seconds is refused."""
    from tp3nets.engine import _distributed as dist_utils

    monkeypatch.delenv("TP3NETS_DIST_TIMEOUT", raising=False)
    assert dist_utils.timeout_seconds() == 600
    monkeypatch.setenv("TP3NETS_DIST_TIMEOUT", "2.5")
    assert dist_utils.timeout_seconds() == 2.5
    for bad in ("0", "-1", "soon", "inf"):
        monkeypatch.setenv("TP3NETS_DIST_TIMEOUT", bad)
        with pytest.raises(ValueError, match="TP3NETS_DIST_TIMEOUT must be a positive number"):
            dist_utils.timeout_seconds()
