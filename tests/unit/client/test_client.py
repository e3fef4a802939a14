"""The Client and Run over a fake transport: what they send, how they wait and fetch models."""

from __future__ import annotations

from pathlib import Path

import pytest
from client_fakes import HANDLE, FakeTransport, event

import searchtuner
from searchtuner.artifacts import BundleError, ModelHandle, pack_bundle, publish_bundle
from searchtuner.client import Client, Dataset, Run, WaitTimeout
from searchtuner.client.transport import EVENTS_PAGE, poll_events
from searchtuner.errors import ConfigError, DataError
from searchtuner.service.schemas import RunDoc
from searchtuner.store import LocalStore


@pytest.fixture
def fake() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def client(fake: FakeTransport) -> Client:
    return Client("http://127.0.0.1:1", transport=fake)


def test_creating_a_client_makes_no_request() -> None:
    client = Client("http://127.0.0.1:1")  # nothing listens on port 1
    assert str(client.url) == "http://127.0.0.1:1"
    with pytest.raises(ConfigError, match="positive"):
        Client("http://127.0.0.1:1", timeout=0)


def test_the_url_and_token_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCHTUNER_URL", "grpc://10.0.0.1:5000")
    client = Client()
    assert client.url.is_grpc and client.url.port == 5000
    assert client.transport.url == "grpc://10.0.0.1:5000"


def test_fit_with_handles_uploads_nothing(client: Client, fake: FakeTransport) -> None:
    run = client.fit(
        "all-MiniLM-L6-v2",
        HANDLE,
        Dataset(handle="std1:" + "cd" * 32),
        model_options={"pooling": "mean"},
        name="first",
        onnx=False,
        config={"epochs": 3, "loss": "TripletMarginLoss"},
        epochs=2,
        learning_rate=1e-4,
    )
    assert fake.uploads == []
    (request,) = fake.created
    assert request.model == "all-MiniLM-L6-v2"
    assert (request.train_data, request.eval_data) == (HANDLE, "std1:" + "cd" * 32)
    assert request.config == {"epochs": 2, "loss": "TripletMarginLoss", "learning_rate": 1e-4}
    assert request.model_options == {"pooling": "mean"}
    assert (request.name, request.onnx) == ("first", False)
    assert (run.id, run.name, run.state) == ("run-1", "first", "QUEUED")


def test_fit_uploads_files_and_documents_first(
    client: Client, fake: FakeTransport, tmp_path: Path
) -> None:
    train = tmp_path / "train.csv"
    train.write_text("text,label\na,b\n")
    docs = [searchtuner.data.LabeledDoc(text="x", label="y")]
    client.fit("all-MiniLM-L6-v2", str(train), docs, data_kind="labeled")
    assert [u["data"] for u in fake.uploads] == [str(train), docs]
    assert {u["kind"] for u in fake.uploads} == {"labeled"}
    (request,) = fake.created
    assert request.train_data.startswith("std1:") and request.eval_data.startswith("std1:")
    assert request.eval_data != request.train_data


def test_the_same_file_for_training_and_evaluation_is_uploaded_once(
    client: Client, fake: FakeTransport, tmp_path: Path
) -> None:
    train = tmp_path / "train.csv"
    train.write_text("text,label\na,b\n")
    client.fit("all-MiniLM-L6-v2", train, str(train))
    assert len(fake.uploads) == 1
    assert fake.created[0].train_data == fake.created[0].eval_data


def test_fit_refuses_data_that_failed_validation(
    client: Client, fake: FakeTransport, tmp_path: Path
) -> None:
    fake.dataset_ok = False
    train = tmp_path / "train.csv"
    train.write_text("text,label\na,\n")
    with pytest.raises(DataError, match="training data failed validation") as caught:
        client.fit("all-MiniLM-L6-v2", train)
    assert "row 3: no label" in str(caught.value)
    assert fake.created == []


def test_fit_names_data_that_is_neither_a_file_nor_a_handle(client: Client) -> None:
    with pytest.raises(ConfigError, match=r"neither a dataset handle \(std1:...\) nor a file"):
        client.fit("all-MiniLM-L6-v2", "trian.csv")


def test_upload_checks_its_arguments_before_sending(client: Client, fake: FakeTransport) -> None:
    with pytest.raises(ConfigError, match="is a dataset handle"):
        client.upload(HANDLE)
    with pytest.raises(ConfigError, match=r"batch_size must be 1..10000"):
        client.upload([], batch_size=0)
    with pytest.raises(ConfigError, match="allowed: labeled"):
        client.upload([], kind="labelled")
    assert fake.uploads == []
    dataset = client.upload([], kind="PAIRS", name="n", batch_size=7)
    assert fake.uploads[-1] == {"data": [], "kind": "pairs", "name": "n", "batch_size": 7}
    assert dataset.ok and str(dataset) == dataset.handle


def test_wait_polls_until_the_run_ends(client: Client, fake: FakeTransport) -> None:
    fake.states = ["QUEUED", "TRAINING", "EVALUATING", "FAILED"]
    run = client.get_run("run-1")
    assert run.wait(timeout=10, poll=0.01) is run
    assert (run.state, run.reason, run.is_final) == ("FAILED", "boom", True)


def test_wait_gives_up_after_its_timeout(client: Client, fake: FakeTransport) -> None:
    fake.states = ["TRAINING"]
    run = client.get_run("run-1")
    with pytest.raises(WaitTimeout, match=r"run run-1 is still TRAINING after 0.05 s"):
        run.wait(timeout=0.05, poll=0.01)
    with pytest.raises(ConfigError, match="poll"):
        run.wait(poll=0)


def test_stream_logs_follows_to_the_end(client: Client, fake: FakeTransport) -> None:
    fake.event_log = [
        event(1, "state", "queued", state="QUEUED"),
        event(2, "state", "training", state="TRAINING"),
        event(3, "progress", "step 1/2", step=1, total_steps=2),
    ]
    fake.states = ["TRAINING", "FINISHED"]
    run = Run(client, RunDoc(run_id="run-1", state="QUEUED"))
    lines = list(run.stream_logs(follow=True, timeout=10, poll=0.01))
    assert lines == [
        "2026-01-01T00:00:01Z QUEUED     queued",
        "2026-01-01T00:00:02Z TRAINING   training",
        "2026-01-01T00:00:03Z TRAINING   step 1/2",
    ]
    assert run.state == "FINISHED"  # read again when the stream ended


def test_streamed_events_update_the_cached_state(client: Client, fake: FakeTransport) -> None:
    fake.event_log = [event(1, "state", state="TRAINING"), event(2, "progress", step=5)]
    fake.states = ["TRAINING"]
    run = Run(client, RunDoc(run_id="run-1", state="QUEUED"))
    stream = run.stream_events(timeout=1, poll=0.01)
    assert next(stream)["type"] == "state" and run.state == "TRAINING"
    assert next(stream)["data"] == {"step": 5} and run.progress == {"step": 5}


def test_following_events_pages_through_a_long_log(fake: FakeTransport) -> None:
    fake.event_log = [event(seq) for seq in range(1, 2 * EVENTS_PAGE + 6)]
    fake.states = ["FINISHED"]
    seen = [e.seq for e in poll_events(fake, "run-1", after=3, timeout=5, poll=0.01)]
    assert seen == list(range(4, 2 * EVENTS_PAGE + 6))


def test_a_run_that_never_ends_times_out_the_follow(fake: FakeTransport) -> None:
    fake.states = ["TRAINING"]
    with pytest.raises(WaitTimeout, match="searchtuner logs run-1 -f"):
        list(poll_events(fake, "run-1", after=0, timeout=0.05, poll=0.01))


def test_logs_metrics_cancel_and_listings(client: Client) -> None:
    run = client.get_run("run-1")
    assert run.logs() == "a log\n"
    assert run.metrics() == {"before": {"map@10": 0.4}, "after": {"map@10": 0.5}}
    assert run.cancel().state == "CANCELLED"
    assert [r.id for r in client.list_runs()] == ["run-1"]
    assert [d.name for d in client.list_datasets()] == ["tickets"]
    assert run.status()["state"] == "QUEUED"


def test_a_run_without_a_model_says_when_there_will_be_one(
    client: Client, fake: FakeTransport
) -> None:
    fake.states = ["TRAINING"]
    with pytest.raises(ConfigError, match="no model yet; a model is published when the run"):
        client.get_model("run-1")
    fake.states = ["FAILED"]
    with pytest.raises(ConfigError, match="ended FAILED and has no model: boom"):
        client.pull("run-1", "anywhere")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A small saved model: its bundle folder, its archive and the archive's digest."""
    import torch

    torch.manual_seed(0)
    model = searchtuner.build_model("mlp", input_dim=4, hidden_dims=[8], output_dim=4)
    root = tmp_path_factory.mktemp("bundle")
    folder = searchtuner.save_bundle(model, root / "bundle", onnx=False)
    archive = root / "model.tar"
    return folder, archive, pack_bundle(folder, archive)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEARCHTUNER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_pull_downloads_verifies_and_saves_a_loadable_folder(
    client: Client, fake: FakeTransport, bundle: tuple[Path, Path, str], tmp_path: Path, cache: Path
) -> None:
    _, archive, sha256 = bundle
    fake.archive = archive
    handle = ModelHandle("s3://elsewhere/models/x.tar", sha256, archive.stat().st_size)
    fake.model_handle = str(handle)
    fake.states = ["FINISHED"]
    folder = client.pull("run-1", tmp_path / "out")
    assert folder == tmp_path / "out"
    model = searchtuner.load_bundle(folder)
    assert model.embedding_dim == 4
    assert (cache / "models" / sha256).is_dir()  # downloaded once, kept in the cache
    # a handle alone is found among the runs and downloaded the same way
    assert client.get_model(str(handle)).embedding_dim == 4
    with pytest.raises(ConfigError, match="not an empty folder"):
        client.pull("run-1", tmp_path / "out")


def test_a_download_that_does_not_match_the_handle_is_refused(
    client: Client, fake: FakeTransport, bundle: tuple[Path, Path, str], tmp_path: Path, cache: Path
) -> None:
    _, archive, _ = bundle
    fake.archive = archive
    wrong = "0" * 64
    fake.model_handle = str(ModelHandle("s3://b/k.tar", wrong, archive.stat().st_size))
    fake.states = ["FINISHED"]
    with pytest.raises(BundleError, match="SHA-256"):
        client.get_model("run-1")
    assert not (cache / "models" / wrong).exists()


def test_without_a_download_route_the_model_is_read_from_its_store(
    bundle: tuple[Path, Path, str], tmp_path: Path, cache: Path
) -> None:
    folder, _, _ = bundle
    handle = publish_bundle(folder, LocalStore(tmp_path / "store"))
    fake = FakeTransport(downloads_models=False)
    fake.model_handle, fake.states = str(handle), ["FINISHED"]
    client = Client("grpc://127.0.0.1:1", transport=fake)
    assert client.get_model("run-1").embedding_dim == 4
    # a store on another machine: a model in the cache still loads, another one cannot
    remote = ModelHandle("file:///no/such/store/models/x.tar", handle.sha256, handle.size)
    assert client.get_model(str(remote)).embedding_dim == 4
    other = ModelHandle("file:///no/such/store/models/y.tar", "1" * 64, handle.size)
    with pytest.raises(ConfigError, match="not on this machine; connect over HTTP"):
        client.get_model(str(other))
