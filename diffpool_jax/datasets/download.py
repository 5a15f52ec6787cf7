"""Download and safe extraction of TU data set zips into a cache folder.

A download goes to a temporary file that is renamed only after the zip has
been verified, and extraction goes to a temporary folder whose files are
moved into place at the end: an interrupted run never leaves half a data
set, and files already in the target folder are never deleted or
overwritten.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Optional

TU_URL = "https://www.chrsmrrs.com/graphkerneldatasets"
CACHE_ENV = "DIFFPOOL_JAX_DATA"
# Refuse archives that expand to more than this multiple of their size
# (TU zips compress text about 5-10x) or beyond the absolute cap.
MAX_EXPANSION = 200
MAX_EXTRACTED_BYTES = 20 * 2**30
TIMEOUT_SECONDS = 20


def default_cache_dir() -> Path:
  """`$DIFFPOOL_JAX_DATA`, else `~/.cache/diffpool_jax`."""
  env = os.environ.get(CACHE_ENV)
  return Path(env) if env else Path.home() / ".cache" / "diffpool_jax"


def fetch(url: str, destination: Path) -> None:
  """Downloads `url` to `destination` (raises OSError on failure)."""
  with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
    with open(destination, "wb") as out:
      shutil.copyfileobj(response, out)


def check_member(info: zipfile.ZipInfo, archive: Path) -> PurePosixPath:
  """The member's relative path; ValueError if it would leave the folder."""
  path = PurePosixPath(info.filename.replace("\\", "/"))
  mode = info.external_attr >> 16
  if path.is_absolute() or ".." in path.parts or (
      info.filename[1:2] == ":"):
    raise ValueError(f"{archive}: member {info.filename!r} has a path "
                     "outside the target folder; refusing to extract")
  if stat.S_ISLNK(mode):
    raise ValueError(f"{archive}: member {info.filename!r} is a link; "
                     "refusing to extract")
  return path


def safe_extract(archive: Path, target: Path) -> None:
  """Extracts a zip into `target`, refusing unsafe members and zip bombs."""
  try:
    with zipfile.ZipFile(archive) as zf:
      members = [(info, check_member(info, archive)) for info in zf.infolist()]
      declared = sum(info.file_size for info, _ in members)
      limit = min(MAX_EXPANSION * max(archive.stat().st_size, 1),
                  MAX_EXTRACTED_BYTES)
      if declared > limit:
        raise ValueError(f"{archive}: expands to {declared} bytes, more than "
                         f"{limit}; refusing to extract")
      written = 0
      for info, path in members:
        destination = target.joinpath(*path.parts)
        if info.is_dir():
          destination.mkdir(parents=True, exist_ok=True)
          continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as source, open(destination, "wb") as out:
          while chunk := source.read(1 << 20):
            written += len(chunk)
            if written > limit:
              raise ValueError(f"{archive}: expands beyond {limit} bytes; "
                               "refusing to extract")
            out.write(chunk)
  except zipfile.BadZipFile as error:
    raise ValueError(f"{archive}: not a valid zip file ({error})") from None


def verify_zip(archive: Path, marker: str) -> None:
  """ValueError unless `archive` is an intact zip holding a file whose path
  ends with `marker` (e.g. "ENZYMES_A.txt", "raw/num-node-list.csv.gz")."""
  try:
    with zipfile.ZipFile(archive) as zf:
      broken = zf.testzip()
      names = zf.namelist()
  except zipfile.BadZipFile as error:
    raise ValueError(f"{archive}: not a valid zip file ({error})") from None
  if broken is not None:
    raise ValueError(f"{archive}: member {broken!r} is corrupt")
  if not any(n.endswith(marker) for n in names):
    raise ValueError(f"{archive}: holds no {marker}")


def download_tu(name: str, root: Path, url: Optional[str] = None) -> Path:
  """Downloads and extracts TU data set `name` into `root/name/`.

  Returns the folder. Raises OSError (with where to put the files by hand)
  when the download fails, ValueError for a corrupt or unsafe zip.
  """
  return download_archive(f"{url or TU_URL}/{name}.zip", root, name,
                          f"{name}_A.txt", f"TU data set {name!r}",
                          f"the files (e.g. {name}_A.txt[.gz])")


def download_archive(source: str, root: Path, folder_name: str, marker: str,
                     what: str, files: str) -> Path:
  """Downloads the zip at `source` once into `root` (verified: intact, and
  holding `marker`, a path relative to the data set's folder) and moves
  the extracted data set's folder to `root/folder_name`; returns it.
  OSError naming `what` and where to put `files` by hand when the download
  fails; ValueError for a corrupt or unsafe zip."""
  root.mkdir(parents=True, exist_ok=True)
  folder = root / folder_name
  archive = root / f"{folder_name}.zip"
  if not archive.is_file():
    partial = Path(tempfile.mkstemp(dir=root, prefix=f".{folder_name}.",
                                    suffix=".zip.part")[1])
    try:
      fetch(source, partial)
      verify_zip(partial, marker)
      os.replace(partial, archive)
    except (OSError, urllib.error.URLError) as error:
      raise OSError(
          f"could not download {what} from {source} ({error}). Without "
          f"network, put {files} into {folder}/ or pass root= to a folder "
          f"holding {folder_name}/") from None
    finally:
      partial.unlink(missing_ok=True)
  verify_zip(archive, marker)
  staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder_name}.extract."))
  try:
    safe_extract(archive, staging)
    depth = len(PurePosixPath(marker).parts)
    found = next((path for path in staging.rglob(PurePosixPath(marker).name)
                  if path.as_posix().endswith(marker)), None)
    if found is None:
      raise ValueError(f"{archive}: holds no file named exactly {marker} "
                       f"(is it the zip of {what}?)")
    move_into(found.parents[depth - 1], folder)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return folder


def move_into(extracted: Path, folder: Path) -> None:
  """Moves the extracted files into `folder`, which may already exist with
  files of the user's: those are never deleted or overwritten (ValueError
  naming them instead, before anything is moved)."""
  folder.mkdir(parents=True, exist_ok=True)
  names = sorted(path.name for path in extracted.iterdir())
  clashes = [n for n in names if (folder / n).exists()]
  if clashes:
    raise ValueError(
        f"{folder}: already holds {', '.join(clashes)}; refusing to "
        "overwrite files this library did not write (move them away, or "
        "pass root= to the folder that holds the complete set)")
  for name in names:
    os.replace(extracted / name, folder / name)
