"""Multi-trial search on NNI's experiment engine (``execution.engine: nni``): the config turned into NNI's own config
objects (local and remote), the one-line errors checked before NNI's manager starts, a crashed trial's message,
and one real run of 4 trials, 2 at a time, as separate processes on the local training service."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from nni_latency.search import engine
from nni_latency.search.config import load_search_config

REPO = Path(__file__).resolve().parents[1]
REMOTE = REPO / "examples" / "search_engine" / "remote_engine.yaml"
LOCAL = REPO / "examples" / "search_engine" / "local_engine.yaml"
TINY = ("space: {name: nasbench201, input_size: 8}\n"
        "data: {limit: 100, batch_size: 32}\n"
        "strategy: {name: random}\n"
        "multi_trial: {trials: 4, trial_epochs: 1}\n"
        "latency: {target_ms: 1000.0}\n"
        "retrain: {epochs: 1}\n")
ENGINE_TIMEOUT_S = 420  # the whole engine run, NNI's manager start and 4 trial processes included


def _config(tmp_path, text: str = TINY, *overrides: str):
    path = tmp_path / "search.yaml"
    path.write_text(text, encoding="utf-8")
    return load_search_config(path, list(overrides), output_dir=str(tmp_path / "run"))


def _free_port() -> int:
    """A port nobody listens on, with port + 1 free as well (NNI's remote platforms take both)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("localhost", 0))
            port = probe.getsockname()[1]
        with socket.socket() as probe:
            if port < 65534 and probe.connect_ex(("localhost", port + 1)) != 0:
                return port
    pytest.fail("no free port pair found")


# --- the config, turned into NNI's ------------------------------------------------------------------------

def test_in_process_stays_the_default(tmp_path):
    assert _config(tmp_path).execution.engine == "in_process"


def test_local_engine_config_becomes_nni_local_config(tmp_path):
    from nni.experiment.config.training_services import LocalConfig
    from nni.nas.experiment.config import TrainingServiceEngineConfig

    config = load_search_config(LOCAL, [f"output_dir={tmp_path}"])
    nni_config = engine.nni_experiment_config(config).canonical_copy()
    assert isinstance(nni_config.training_service, LocalConfig)
    assert isinstance(nni_config.execution_engine, TrainingServiceEngineConfig)
    assert nni_config.trial_concurrency == config.execution.trial_concurrency
    assert nni_config.max_trial_number == config.multi_trial.trials
    assert Path(nni_config.experiment_working_directory) == (tmp_path / "nni-experiments").resolve()


def test_remote_engine_config_becomes_nni_remote_config(tmp_path):
    """The documented remote config, with NNI's exact keys, is accepted by NNI (no SSH connection is made)."""
    from nni.experiment.config.training_services import RemoteConfig

    key = tmp_path / "id_rsa"  # NNI checks that the key file exists
    key.write_text("not a real key", encoding="utf-8")
    config = load_search_config(REMOTE, [f"output_dir={tmp_path}"])
    for machine in config.execution.training_service["machine_list"]:
        machine["ssh_key_file"] = str(key)
    nni_config = engine.nni_experiment_config(config).canonical_copy()
    service = nni_config.training_service
    assert isinstance(service, RemoteConfig)
    assert [m.host for m in service.machine_list] == [m["host"] for m in config.execution.training_service["machine_list"]]
    assert all(m.user and m.python_path for m in service.machine_list)
    assert nni_config.nni_manager_ip == config.execution.nni_manager_ip
    assert engine.trial_threads(nni_config) is None  # remote cores are the remote machine's business


ERRORS = {
    "unknown_engine": ("execution: {engine: nnii}\n", ["execution.engine 'nnii'", "did you mean 'nni'"]),
    "one_shot_on_engine": ("execution: {engine: nni}\nstrategy: {name: fbnet}\n", ["evolution, random", "'fbnet'"]),
    "concurrency_in_process": ("execution: {trial_concurrency: 2}\n", ["needs execution.engine nni"]),
    "bad_port": ("execution: {engine: nni, port: 0}\n", ["execution.port must be in 1..65534"]),
}


@pytest.mark.parametrize("text,fragments", ERRORS.values(), ids=ERRORS.keys())
def test_execution_errors_are_one_line(tmp_path, text, fragments):
    base = TINY if "strategy:" not in text else TINY.replace("strategy: {name: random}\n", "")
    with pytest.raises(ValueError) as raised:
        _config(tmp_path, base + text)
    message = str(raised.value)
    assert "\n" not in message and all(f in message for f in fragments), message


def _nni_error(tmp_path, service) -> str:
    config = _config(tmp_path, TINY + "execution: {engine: nni}\n")
    config.execution.training_service = service
    with pytest.raises(ValueError) as raised:
        engine.nni_experiment_config(config)
    return str(raised.value)


def test_nni_rejections_are_one_line_and_name_the_section(tmp_path):
    assert "Bad training service platform: locall" in _nni_error(tmp_path, "locall")
    message = _nni_error(tmp_path, {"platform": "remote", "machine_list": []})
    assert message.startswith("execution: NNI rejects") and "machine" in message and "\n" not in message
    assert "platform key" in _nni_error(tmp_path, {"machine_list": []})


def test_port_in_use_is_refused_before_nni_starts():
    with socket.socket() as listener:
        listener.bind(("localhost", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(ValueError, match=f"port {port} is already in use.*set execution.port to a free port"):
            engine.check_port(port, "local")
        with pytest.raises(ValueError, match=f"port {port} is already in use"):
            engine.check_port(port - 1, "remote")  # remote also takes port + 1


def _local(concurrency: int, gpus_per_trial: int = 0, gpu_indices=None):
    service = SimpleNamespace(platform="local", max_trial_number_per_gpu=1, gpu_indices=gpu_indices)
    return SimpleNamespace(training_service=service, trial_concurrency=concurrency, trial_gpu_number=gpus_per_trial)


def test_concurrency_beyond_the_cores_or_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert engine.trial_threads(_local(1)) == 2 and engine.trial_threads(_local(2)) == 1
    with pytest.raises(ValueError, match="trial_concurrency 3 exceeds the 2 CPU core.*lower execution.trial_concurrency to 2"):
        engine.trial_threads(_local(3))
    with pytest.raises(ValueError, match="needs 3 GPU.*has 2; lower execution.trial_concurrency to 2"):
        engine.trial_threads(_local(3, 1, gpu_indices=[0, 1]))
    assert engine.trial_threads(_local(2, 1, gpu_indices=[0, 1])) == 1


@pytest.mark.parametrize("profiled", [False, True], ids=["profile_first", "device_model"])
def test_search_refuses_more_trials_than_cores_before_it_profiles(tmp_path, monkeypatch, capsys, profiled,
                                                                   device_model_path):
    """The campaign's case: ``trial_concurrency`` above the cores was refused only after the device was profiled
    (77 s). It is refused first, in one line, with nothing profiled, loaded or trained."""
    import nni_latency.profile.run as profiling
    import nni_latency.search.run as search_run
    from nni_latency.cli.dispatch import main

    def refuse(*args, **kwargs):
        raise AssertionError("the search started working")

    monkeypatch.setattr(profiling, "run_profile", refuse)
    monkeypatch.setattr(search_run, "run_search", refuse)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    config = tmp_path / "engine.yaml"
    config.write_text(TINY + f"execution: {{engine: nni, trial_concurrency: 3, port: {_free_port()}}}\n",
                      encoding="utf-8")
    extra = ["--set", f"latency.device_model={device_model_path}"] if profiled else []
    code = main(["search", "--config", str(config), "--output-dir", str(tmp_path / "run"), "--no-progress", *extra])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1, error
    assert "execution.trial_concurrency 3 exceeds the 2 CPU core(s)" in error
    assert not (tmp_path / "run" / "profile").exists()


def test_missing_node_runtime_names_the_fix(monkeypatch):
    import importlib.util

    assert engine.check_node_runtime().is_file()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="node runtime is missing.*pip install --force-reinstall nni"):
        engine.check_node_runtime()


def test_crashed_trial_message_shows_the_last_lines_of_its_stderr(tmp_path):
    folder = tmp_path / "trials" / "AbCdE"
    folder.mkdir(parents=True)
    lines = [f"line {i}" for i in range(10)] + ["RuntimeError: CUDA out of memory"]
    (folder / "stderr").write_text("\n".join(lines) + "\n", encoding="utf-8")
    job = SimpleNamespace(trialJobId="AbCdE", logPath=f"file://localhost:{folder}")
    message = engine.failed_trial_message(job)
    assert "\n" not in message and message.startswith("trial AbCdE crashed")
    assert "line 7 | line 8 | line 9 | RuntimeError: CUDA out of memory" in message and "line 5" not in message
    assert "the search goes on" in message and str(folder / "stderr") in message
    remote = engine.failed_trial_message(SimpleNamespace(trialJobId="x", logPath="ssh://10.0.0.2:22/tmp/x"))
    assert "no stderr on this machine" in remote and "ssh://10.0.0.2" in remote


# --- one real run on the local training service ------------------------------------------------------------

def _experiment_processes(experiment_dir: Path) -> list[psutil.Process]:
    """Processes of this test's NNI experiments still alive: the manager (its argv names the folder) and trials
    (their working folder is this test's)."""
    found = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        try:
            text = " ".join(process.info["cmdline"] or [])
            environ = process.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(experiment_dir) in text or str(experiment_dir) in environ.get("NNI_OUTPUT_DIR", ""):
            found.append(process)
    return found


@pytest.mark.engine
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity") else True,
                    reason="two concurrent trials need two cores")
def test_four_trials_two_at_a_time_as_separate_processes(tmp_path, device_model_path):
    port = _free_port()
    config = tmp_path / "engine.yaml"
    config.write_text(TINY + f"execution: {{engine: nni, trial_concurrency: 2, port: {port}}}\n", encoding="utf-8")
    output = tmp_path / "run"
    command = [sys.executable, "-m", "nni_latency.cli.dispatch", "search", "--config", str(config), "--output-dir", str(output),
               "--no-progress", "--set", f"latency.device_model={device_model_path}"]
    search = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        log, _ = search.communicate(timeout=ENGINE_TIMEOUT_S)
    finally:
        if search.poll() is None:  # timed out: stop it as Ctrl-C would, then make sure
            search.send_signal(signal.SIGINT)
            try:
                search.wait(timeout=60)
            finally:
                for process in _experiment_processes(output):
                    process.kill()
                if search.poll() is None:
                    os.killpg(search.pid, signal.SIGKILL)
    assert search.returncode == 0, log[-3000:]
    result = json.loads((output / "result.json").read_text())
    trials = result["trials"]
    assert len(trials) == 4
    pids = {t["pid"] for t in trials}
    assert len(pids) == 4 and search.pid not in pids and os.getpid() not in pids  # one process per trial
    assert all(0.0 <= t["accuracy"] <= 1.0 and 0 < t["latency_ms"] <= 1000.0 and t["seconds"] > 0 for t in trials)
    assert all(t["reward"] == t["accuracy"] for t in trials)  # latency as a filter: the reward is the accuracy
    assert result["architecture"] == max(trials, key=lambda t: t["reward"])["sample"]
    assert [json.loads(line) for line in (output / "trials.jsonl").read_text().splitlines()] == trials
    assert result["config"]["execution"]["engine"] == "nni"
    assert not _experiment_processes(output)  # no manager, no trial left behind
    with socket.socket() as probe:
        assert probe.connect_ex(("localhost", port)) != 0  # and the manager's port is free again


@pytest.fixture
def device_model_path(tmp_path, synthetic_model):
    path = tmp_path / "device_model.json"
    synthetic_model.save(path)
    return path
