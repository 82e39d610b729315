"""Where data comes from: --data path, then the environment variable, then the cache, then a download.

The downloads are real: a loopback HTTP server serves the real archives (or a truncated copy).
"""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from conftest import HAR_ZIP, NAMES_DIR, NAMES_ZIP
from data import DataError, load_har, load_names


class ArchiveServer:
    """Serves {url path: bytes} on 127.0.0.1 and counts the requests it answers.

    short_body=True announces the full Content-Length but closes the connection halfway.
    """

    def __init__(self, files: dict[str, bytes], short_body: bool = False):
        self.files, self.short_body, self.requests = files, short_body, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if server.short_body else body)
                if server.short_body:
                    self.close_connection = True

            def log_message(self, *args):  # keep the test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def closed_port_url() -> str:
    """A loopback URL on which nothing listens: the offline case."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/data.zip"


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.slow
def test_names_downloaded_into_the_cache_once(isolated_data_env, monkeypatch):
    cache = isolated_data_env
    with ArchiveServer({"/data.zip": NAMES_ZIP.read_bytes()}) as server:
        monkeypatch.setenv("NAMES_DATA_URL", server.url("/data.zip"))
        task = load_names()
        assert server.requests == ["/data.zip"]
        assert files_in(cache) == ["names_data.zip"]
        assert (cache / "names_data.zip").read_bytes() == NAMES_ZIP.read_bytes()
        assert task.info["source"] == str(cache / "names_data.zip")
        assert task.num_classes == 18 and task.info["lines"] == 20074

        again = load_names()  # from the cache: the server sees no second request
        assert server.requests == ["/data.zip"]
        assert torch.equal(again.train.x, task.train.x) and torch.equal(again.test.y, task.test.y)


@pytest.mark.slow
def test_har_downloaded_into_the_cache_once(isolated_data_env, monkeypatch):
    cache = isolated_data_env
    with ArchiveServer({"/har.zip": HAR_ZIP.read_bytes()}) as server:
        monkeypatch.setenv("HAR_DATA_URL", server.url("/har.zip"))
        task = load_har()
        assert server.requests == ["/har.zip"]
        assert task.info["source"] == str(cache / "UCI_HAR_Dataset.zip")
        assert len(task.train) + len(task.val) == 7415 and len(task.test) == 2996
        names = files_in(cache)
        assert "UCI_HAR_Dataset.zip" in names and len(names) == 2  # the archive and its parsed .npz
        assert not [n for n in names if ".part" in n]

        again = load_har()
        assert server.requests == ["/har.zip"]
        assert torch.equal(again.val.x, task.val.x)


@pytest.mark.parametrize("short_body", [False, True], ids=["half-archive-served", "connection-cut-halfway"])
@pytest.mark.parametrize("loader, url_env, archive", [(load_names, "NAMES_DATA_URL", NAMES_ZIP),
                                                      (load_har, "HAR_DATA_URL", HAR_ZIP)], ids=["names", "har"])
def test_truncated_download_is_an_error_and_leaves_nothing(loader, url_env, archive, short_body,
                                                            isolated_data_env, monkeypatch):
    cache = isolated_data_env
    data = archive.read_bytes()
    served = data if short_body else data[: len(data) // 2]
    with ArchiveServer({"/data.zip": served}, short_body=short_body) as server:
        monkeypatch.setenv(url_env, server.url("/data.zip"))
        with pytest.raises(DataError) as error:
            loader()
    message = str(error.value)
    print(message)
    expected = "download truncated" if short_body else "not a valid zip archive"
    assert expected in message
    assert files_in(cache) == []  # no partial download, no half-written cache


@pytest.mark.parametrize("loader, env_var, url_env, cached_name", [
    (load_names, "NAMES_DATA", "NAMES_DATA_URL", "names_data.zip"),
    (load_har, "HAR_DATA", "HAR_DATA_URL", "UCI_HAR_Dataset.zip"),
], ids=["names", "har"])
def test_offline_without_data_names_the_three_ways(loader, env_var, url_env, cached_name,
                                                   isolated_data_env, monkeypatch):
    monkeypatch.setenv(url_env, closed_port_url())
    with pytest.raises(DataError) as error:
        loader()
    message = str(error.value)
    print(message)
    assert "--data PATH" in message
    assert f"{env_var}=PATH" in message
    assert f"put {cached_name} in {isolated_data_env}" in message
    assert "\n" not in message
    assert files_in(isolated_data_env) == []


def write_language_folder(folder, languages: dict[str, list[str]]):
    folder.mkdir(parents=True)
    for language, names in languages.items():
        (folder / f"{language}.txt").write_text("".join(n + "\n" for n in names))
    return folder


@pytest.mark.slow
def test_explicit_path_beats_env_var_beats_cache(tmp_path, isolated_data_env, monkeypatch):
    # Three different real sources, told apart by what they load (each language needs a test example).
    explicit = write_language_folder(tmp_path / "explicit", {"Alpha": [f"A{c}" for c in "bcdefgh"], "Beta": [f"B{c}" for c in "bcdefgh"]})
    from_env = write_language_folder(tmp_path / "env", {"Gamma": [f"G{c}" for c in "bcdefgh"], "Delta": [f"D{c}" for c in "bcdefgh"]})
    isolated_data_env.mkdir()
    (isolated_data_env / "names_data.zip").write_bytes(NAMES_ZIP.read_bytes())
    # Were a download attempted, it would fail: the order alone must find the data.
    monkeypatch.setenv("NAMES_DATA_URL", closed_port_url())
    monkeypatch.setenv("NAMES_DATA", str(from_env))

    assert load_names(explicit).class_names == ["Alpha", "Beta"]
    assert load_names().class_names == ["Delta", "Gamma"]
    monkeypatch.delenv("NAMES_DATA")
    cached = load_names()
    assert cached.num_classes == 18 and cached.info["source"] == str(isolated_data_env / "names_data.zip")


def test_explicit_path_and_env_var_must_exist(tmp_path, isolated_data_env, monkeypatch):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=r"^--data .*nowhere: no such file or folder$"):
        load_names(missing)
    monkeypatch.setenv("HAR_DATA", str(missing))
    with pytest.raises(DataError, match=r"^HAR_DATA=.*nowhere: no such file or folder$"):
        load_har()
    # A missing explicit path is an error even if the environment variable would work.
    monkeypatch.setenv("NAMES_DATA", str(NAMES_DIR))
    with pytest.raises(DataError, match="--data"):
        load_names(missing)
    assert files_in(isolated_data_env) == []


@pytest.mark.slow
def test_truncated_archive_in_the_cache_is_discarded_and_downloaded_again(isolated_data_env, monkeypatch, capfd):
    cache = isolated_data_env
    cache.mkdir(parents=True, exist_ok=True)
    damaged = cache / "names_data.zip"
    damaged.write_bytes(NAMES_ZIP.read_bytes()[:5000])  # a copy cut short
    with ArchiveServer({"/data.zip": NAMES_ZIP.read_bytes()}) as server:
        monkeypatch.setenv("NAMES_DATA_URL", server.url("/data.zip"))
        task = load_names()
        assert server.requests == ["/data.zip"]
    warning = capfd.readouterr().err
    assert str(damaged) in warning and "damaged cache file" in warning
    assert damaged.read_bytes() == NAMES_ZIP.read_bytes() and task.num_classes == 18
