"""Audits in chunks: a stopped audit resumes where it stopped, and the Ray engine gives the same bundle."""

import copy
import importlib.util
import os
import pickle
import secrets
import socket
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from core import engine
from core.audit import run_audit
from core.bundle import read_bundle, write_bundle
from core.datasets import read_manifest
from core.engine import ChunkResult, ChunkStore, ResumeError, audit_key
from training import evaluate


def _needs_ray():
    if importlib.util.find_spec("ray") is None:  # not imported here: the engine imports Ray after keeping it on loopback
        pytest.skip("the Ray engine needs ray[data] (requirements.txt)")


def _same_bundle(first, second):
    pd.testing.assert_frame_equal(first.predictions, second.predictions, check_exact=True)
    pd.testing.assert_frame_equal(first.rejects, second.rejects, check_exact=True)
    how = {"created": None, "command": None}  # when and by which command line, not what
    assert first.metrics | how == second.metrics | how


def test_stopped_audit_resumes_without_redoing_finished_chunks(tiny_checkpoint, photo_manifest, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "CHUNK_ROWS", 2)  # five readable rows: chunks of 2, 2 and 1
    real, calls = engine.audit_chunk, []

    def stopped_at_second_chunk(model, paths, **options):
        calls.append(list(paths))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C, or the machine went down
        return real(model, paths, **options)

    monkeypatch.setattr(engine, "audit_chunk", stopped_at_second_chunk)
    work = tmp_path / "work"
    with pytest.raises(KeyboardInterrupt):
        run_audit(tiny_checkpoint, read_manifest(photo_manifest), work_dir=work)
    assert sorted(path.name for path in work.glob("chunk-*")) == ["chunk-00000.npz"]
    first_chunk = calls[0]
    calls.clear()
    monkeypatch.setattr(engine, "audit_chunk", lambda model, paths, **options: (calls.append(list(paths)),
                                                                              real(model, paths, **options))[1])
    resumed = run_audit(tiny_checkpoint, read_manifest(photo_manifest), work_dir=work)
    assert first_chunk not in calls and len(calls) == 2  # only the two unfinished chunks ran
    _same_bundle(resumed, run_audit(tiny_checkpoint, read_manifest(photo_manifest)))
    assert resumed.metrics["n"] == 3 and len(resumed.rejects) == 3


def test_chunks_run_on_one_opencv_thread_and_leave_the_callers_setting(tiny_checkpoint, photo_manifest, monkeypatch):
    real, seen = engine.audit_chunk, []
    monkeypatch.setattr(engine, "audit_chunk", lambda model, paths, **options: (seen.append(cv2.getNumThreads()),
                                                                              real(model, paths, **options))[1])
    before, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(2)  # OpenCV's own pool, as on a 2-core machine
    try:
        run_audit(tiny_checkpoint, read_manifest(photo_manifest))
        assert seen == [1] and cv2.getNumThreads() == 2
        engine._ChunkActor(pickle.dumps(tiny_checkpoint), {"threads": 1})  # a Ray actor keeps its worker at one
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
        torch.set_num_threads(torch_threads)  # the actor set this process's torch threads too


def test_chunks_of_another_audit_are_refused(tmp_path):
    key = audit_key("model-a", ["a.jpg", "b.jpg"], input_kind="photos", face_rule="center", size=48, margin=None)
    ChunkStore(tmp_path, key)
    ChunkStore(tmp_path, key)  # the same audit again: resumes
    with pytest.raises(ResumeError, match=r"another audit \(it differs in images_sha256, model_id\); pass --restart"):
        ChunkStore(tmp_path, key | audit_key("model-b", ["a.jpg", "c.jpg"]) | {"input_kind": "photos"})


def test_a_chunk_file_round_trips_without_pickle():
    hashes = pd.DataFrame({"sha1": ["ab", ""], "dhash": ["cd", ""], "centre": ["ef", ""]}, dtype=str)
    chunk = ChunkResult(errors=["", "no face found"], records=[{"n_faces": 1, "face_score": 0.9}, {"n_faces": 0}],
                        hashes=hashes, outputs={"age": np.array([31.5], np.float32), "gender": np.eye(2)[:1]})
    back = ChunkResult.from_bytes(chunk.to_bytes())
    assert (back.errors, back.records) == (chunk.errors, chunk.records)
    pd.testing.assert_frame_equal(back.hashes, hashes)
    assert back.outputs.keys() == chunk.outputs.keys() and np.array_equal(back.outputs["gender"], np.eye(2)[:1])


def test_ray_engine_gives_the_same_bundle_as_one_process(tiny_checkpoint, photo_manifest, tmp_path, monkeypatch):
    _needs_ray()
    monkeypatch.setattr(engine, "CHUNK_ROWS", 2)
    lines = photo_manifest.read_text().splitlines()  # the first photo's face named by a labelled box, drawn loosely
    boxes = [",box_x,box_y,box_w,box_h", ",0,0,4000,4000"] + [",,,,"] * (len(lines) - 2)
    photo_manifest.write_text("".join(f"{line}{box}\n" for line, box in zip(lines, boxes)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray actor: float sums in another order would differ in the last bits
    try:
        local = run_audit(tiny_checkpoint, read_manifest(photo_manifest))
    finally:
        torch.set_num_threads(threads)
    assert local.predictions["face_reason"][0].startswith("the labelled box, the photo's only face: the only one centred in it")
    ray = run_audit(tiny_checkpoint, read_manifest(photo_manifest), engine="ray", workers=engine.CPUS)
    _same_bundle(local, ray)
    write_bundle(ray, tmp_path / "parts", part_rows=2)
    assert sorted(path.name for path in (tmp_path / "parts" / "predictions").iterdir()) == [
        "part-00000.parquet", "part-00001.parquet"]
    pd.testing.assert_frame_equal(read_bundle(tmp_path / "parts").predictions, local.predictions, check_exact=True)


def test_evaluate_cleans_up_refuses_foreign_chunks_and_restarts(model_dir, photo_manifest, tmp_path, capsys):
    out = tmp_path / "bundle"
    command = ["--manifest", str(photo_manifest), "--out", str(out), "--model", str(model_dir), "--threads", "1"]
    assert evaluate.main(command) == 0
    assert not (out / evaluate.WORK_DIR).exists()  # finished chunks go once the bundle is written
    ChunkStore(out / evaluate.WORK_DIR, audit_key("another-model", ["x.jpg"]))
    assert evaluate.main(command) == 2
    error = capsys.readouterr().err
    assert "holds the finished chunks of another audit (it differs in " in error and "model_id" in error
    assert error.rstrip().endswith("pass --restart to discard them, or choose another --out")
    assert evaluate.main([*command, "--restart"]) == 0
    assert read_bundle(out).metrics["n"] == 3


@pytest.fixture
def loopback_ray_cluster():
    """A one-node Ray cluster started as a user would (`ray start --head`), on 127.0.0.1 only, with its own token;
    yields its address and the environment a driver needs to join it."""
    _needs_ray()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {name: value for name, value in os.environ.items() if name != engine.LOOPBACK_RAY} | {
        "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}  # the driver keeps to loopback by itself, from the address
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    subprocess.run([*ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    f"--num-cpus={engine.CPUS}", "--include-dashboard=false", "--disable-usage-stats"],
                   env=env | {engine.LOOPBACK_RAY: "0"}, check=True, capture_output=True, timeout=180)
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([*ray_cli, "stop"], env=env, capture_output=True, timeout=180)


def _audit_on_ray(address, env, arguments):
    """`training.evaluate --engine ray --ray-address address` in its own process, as a user runs it (a local Ray
    when `address` is empty)."""
    return subprocess.run([sys.executable, "-m", "training.evaluate", *arguments, "--engine", "ray",
                           *(["--ray-address", address] if address else []), "--workers", str(engine.CPUS)], env=env,
                          capture_output=True, text=True, timeout=600, cwd=engine.REPO_ROOT, check=False)


def test_auto_names_the_cluster_ray_would_join(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert engine._head_address("auto") == "auto"  # no `ray start` here: Ray looks further itself
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:6390\n")
    assert engine._head_address("auto") == "127.0.0.1:6390" and engine._is_loopback("auto")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert engine._head_address("auto") == "10.0.0.5:6379" and not engine._is_loopback("auto")
    assert engine._head_address("localhost:6379") == "localhost:6379"


@pytest.mark.slow
@pytest.mark.parametrize("named_as", ["host:port", "auto"])  # auto: as the README says to run it on the head node
def test_an_audit_on_a_ray_cluster_gives_the_local_bundle(loopback_ray_cluster, model_dir, photo_manifest, tmp_path,
                                                          named_as):
    address, env = loopback_ray_cluster
    arguments = ["--manifest", str(photo_manifest), "--model", str(model_dir)]
    cluster = _audit_on_ray(address if named_as == "host:port" else "auto", env,
                                [*arguments, "--out", str(tmp_path / "cluster")])
    assert cluster.returncode == 0, cluster.stderr[-3000:]
    assert evaluate.main([*arguments, "--threads", "1", "--out", str(tmp_path / "local")]) == 0
    _same_bundle(read_bundle(tmp_path / "local"), read_bundle(tmp_path / "cluster"))


@pytest.mark.slow
def test_a_cluster_that_refuses_the_token_gets_a_clear_message(loopback_ray_cluster, model_dir, photo_manifest,
                                                                tmp_path):
    address, env = loopback_ray_cluster
    result = _audit_on_ray(address, env | {"RAY_AUTH_TOKEN": "not-the-token"},
                               ["--manifest", str(photo_manifest), "--model", str(model_dir), "--out", str(tmp_path)])
    assert result.returncode == 2
    assert f"the Ray cluster at {address} refused this process's authentication token" in result.stderr


THEIR_PREDICTOR = '''import numpy as np


def predict(chips):
    brightness = chips.reshape(len(chips), -1).mean(1) / 255
    return {"age": 20 + 40 * brightness, "gender": np.stack([brightness, 1 - brightness], 1)}
'''


@pytest.mark.slow
@pytest.mark.parametrize("ray_runs", ["here", "on a cluster"])
def test_a_users_function_from_outside_faceaudit_runs_on_ray(request, photo_manifest, tmp_path, monkeypatch, ray_runs):
    """`--predictor` from the user's own folder (on their PYTHONPATH, not FaceAudit's): Ray's workers import it too."""
    _needs_ray()
    package = f"their_models_{secrets.token_hex(4)}"  # a fresh name: no earlier import stands in for the shipped one
    (tmp_path / "code" / package).mkdir(parents=True)
    (tmp_path / "code" / package / "__init__.py").write_text("")
    (tmp_path / "code" / package / "vendor.py").write_text(THEIR_PREDICTOR)
    monkeypatch.syspath_prepend(tmp_path / "code")
    arguments = ["--manifest", str(photo_manifest), "--predictor", f"{package}.vendor:predict", "--run-my-code"]
    address, env = (request.getfixturevalue("loopback_ray_cluster") if ray_runs == "on a cluster"
                    else ("", os.environ | {"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}))
    ray = _audit_on_ray(address, env | {"PYTHONPATH": str(tmp_path / "code")},
                        [*arguments, "--out", str(tmp_path / "ray")])
    assert ray.returncode == 0, ray.stderr[-3000:]
    assert evaluate.main([*arguments, "--out", str(tmp_path / "local")]) == 0
    _same_bundle(read_bundle(tmp_path / "local"), read_bundle(tmp_path / "ray"))


def test_only_a_users_own_module_is_sent_to_rays_workers(tiny_checkpoint, tmp_path, monkeypatch):
    from core.onnx_model import CallableModel

    (tmp_path / "their_vendor.py").write_text(THEIR_PREDICTOR)
    monkeypatch.syspath_prepend(tmp_path)
    theirs = CallableModel("their_vendor:predict", 32)
    assert engine._modules_to_ship(theirs) == [theirs.top_module]
    assert engine._modules_to_ship(CallableModel("tests.core.test_onnx:constant_model", 32)) == []  # FaceAudit's folder
    assert engine._modules_to_ship(CallableModel("numpy:zeros", 32)) == []  # installed: every node has it
    assert engine._modules_to_ship(tiny_checkpoint) == []


@pytest.mark.slow
def test_what_one_process_refuses_ray_refuses_with_the_same_message(photo_manifest, tmp_path):
    """A user's function that returns the wrong shapes, and an ONNX file the workers cannot open (missing on their
    node): Ray stops with FaceAudit's one-line message, not with Ray's traceback of it."""
    _needs_ray()
    from core.errors import FaceAuditError
    from core.onnx_model import CallableModel, OnnxModel
    from tests.core.test_onnx import _vendor_file

    dataset = read_manifest(photo_manifest)
    wrong = CallableModel("tests.core.test_onnx:wrong_shape_model", 32)
    with pytest.raises(FaceAuditError) as here:
        run_audit(wrong, dataset)
    with pytest.raises(FaceAuditError) as on_ray:
        run_audit(wrong, dataset, engine="ray", workers=engine.CPUS)
    assert str(on_ray.value) == str(here.value) and "returned 'gender' with shape" in str(here.value)
    onnx = OnnxModel(_vendor_file(tmp_path))
    onnx.path.unlink()  # opened here, then gone before the workers open it
    with pytest.raises(FaceAuditError, match=f"^{onnx.path} is missing"):
        run_audit(onnx, dataset, engine="ray", workers=engine.CPUS)


@pytest.mark.slow
def test_ray_audits_on_cpus_where_auto_would_pick_a_gpu(model_dir, photo_manifest, tmp_path, monkeypatch, capsys):
    """Ray's actors ask for CPUs only: `auto` on a GPU machine gives them the model on the CPU (a CUDA model could
    not be opened there), and an explicit cuda is refused with what to do."""
    _needs_ray()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine
    real, loaded = evaluate.load_checkpoint, []
    monkeypatch.setattr(evaluate, "load_checkpoint",
                        lambda folder, device: (loaded.append(device), real(folder, device=device))[1])
    command = ["--manifest", str(photo_manifest), "--model", str(model_dir), "--engine", "ray", "--out", str(tmp_path)]
    with pytest.raises(SystemExit):
        evaluate.main([*command, "--device", "cuda"])
    assert "--engine ray runs its actors on CPUs; device cuda (--device or FACEAUDIT_DEVICE) needs --engine local" in (
        capsys.readouterr().err)
    assert evaluate.main(command) == 0 and loaded == [torch.device("cpu")]


def test_ray_refuses_a_model_or_device_off_the_cpu_before_it_starts(tiny_checkpoint, photo_manifest):
    """A Python caller of `run_audit(engine="ray")` learns at once that Ray's actors run on CPUs (a CUDA model would
    fail inside every actor); a meta-device copy stands in for a GPU here."""
    dataset = read_manifest(photo_manifest)
    with pytest.raises(ValueError, match="engine 'ray' runs its actors on CPUs.*got cpu, cuda"):
        run_audit(tiny_checkpoint, dataset, engine="ray", device=torch.device("cuda"))
    elsewhere = copy.deepcopy(tiny_checkpoint)
    elsewhere.model.to("meta")
    with pytest.raises(ValueError, match="got cpu, meta: load the checkpoint with device=torch.device"):
        run_audit(elsewhere, dataset, engine="ray")
