"""Download into the cache from a local HTTP server, and unsafe archives."""

import functools
import http.server
import io
import stat
import threading
import zipfile

import pytest

from diffpool_jax.datasets import download, load_tu
from tests.test_tu import GOOD


def toy_zip(name="TOY", extra=()) -> bytes:
  """A zip laid out like the official ones: NAME/NAME_table.txt."""
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
    for table, text in GOOD.items():
      zf.writestr(f"{name}/{name}_{table}.txt", text)
    for info, data in extra:
      zf.writestr(info, data)
  return buffer.getvalue()


@pytest.fixture
def server(tmp_path):
  """Serves files from a folder on 127.0.0.1; yields (base_url, folder,
  request log)."""
  folder = tmp_path / "served"
  folder.mkdir()
  requests = []

  class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
      requests.append(self.path)

  handler = functools.partial(Handler, directory=str(folder))
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{httpd.server_address[1]}", folder, requests
  httpd.shutdown()
  httpd.server_close()


def test_download_once_into_cache(server, tmp_path, monkeypatch):
  url, served, requests = server
  (served / "TOY.zip").write_bytes(toy_zip())
  cache = tmp_path / "cache"
  monkeypatch.setenv("DIFFPOOL_JAX_DATA", str(cache))
  first = load_tu("TOY", url=url)
  second = load_tu("TOY", url=url)
  assert first.stats() == second.stats() and first.num_graphs == 2
  assert len(requests) == 1                     # downloaded once
  assert (cache / "TOY" / "TOY_A.txt").is_file()
  assert not list(cache.glob(".*"))             # no temporary leftovers


def test_no_network_fails_fast_with_where_to_put_files(tmp_path):
  with pytest.raises(OSError, match=r"could not download .*put the files"):
    load_tu("TOY", root=tmp_path, url="http://127.0.0.1:9")
  assert list(tmp_path.iterdir()) == []         # nothing half written


def test_corrupt_zip_is_rejected_and_not_kept(server, tmp_path):
  url, served, _ = server
  (served / "TOY.zip").write_bytes(toy_zip()[:-40])
  with pytest.raises(ValueError, match="not a valid zip file"):
    load_tu("TOY", root=tmp_path / "data", url=url)
  assert list((tmp_path / "data").iterdir()) == []


@pytest.mark.parametrize("member", ["../evil.txt", "/etc/evil.txt",
                                    "TOY/../../evil.txt"])
def test_member_outside_target_is_refused(server, tmp_path, member):
  url, served, _ = server
  (served / "TOY.zip").write_bytes(toy_zip(extra=[(member, "x")]))
  with pytest.raises(ValueError, match="outside the target folder"):
    load_tu("TOY", root=tmp_path / "data", url=url)
  assert not (tmp_path / "evil.txt").exists()
  assert not (tmp_path / "data" / "TOY").exists()


def test_link_member_is_refused(tmp_path):
  info = zipfile.ZipInfo("TOY/link")
  info.external_attr = (stat.S_IFLNK | 0o777) << 16
  archive = tmp_path / "TOY.zip"
  archive.write_bytes(toy_zip(extra=[(info, "/etc/passwd")]))
  with pytest.raises(ValueError, match="is a link"):
    download.safe_extract(archive, tmp_path / "out")


def test_zip_bomb_is_refused(tmp_path):
  archive = tmp_path / "TOY.zip"
  archive.write_bytes(toy_zip(extra=[("TOY/zeros.txt", "0" * 5_000_000)]))
  with pytest.raises(ValueError, match="expands to .* bytes, more than"):
    download.safe_extract(archive, tmp_path / "out")


def test_download_never_deletes_or_overwrites_user_files(server, tmp_path):
  url, served, _ = server
  (served / "TOY.zip").write_bytes(toy_zip())
  folder = tmp_path / "data" / "TOY"
  folder.mkdir(parents=True)
  (folder / "notes.txt").write_text("mine")
  dataset = load_tu("TOY", root=tmp_path / "data", url=url)
  assert dataset.num_graphs == 2
  assert (folder / "notes.txt").read_text() == "mine"
  # A file of the archive's name that the user put there is not replaced.
  (folder / "TOY_A.txt").unlink()
  (folder / "TOY_graph_labels.txt").write_text("mine")
  with pytest.raises(ValueError, match="already holds .*TOY_graph_labels.txt"
                     ".*refusing to overwrite"):
    load_tu("TOY", root=tmp_path / "data", url=url)
  assert (folder / "TOY_graph_labels.txt").read_text() == "mine"
  assert (folder / "notes.txt").read_text() == "mine"


def test_zip_of_another_set_is_named(server, tmp_path):
  url, served, _ = server
  (served / "TOY.zip").write_bytes(toy_zip(name="XTOY"))
  with pytest.raises(ValueError, match="holds no file named exactly "
                     "TOY_A.txt"):
    load_tu("TOY", root=tmp_path / "data", url=url)
