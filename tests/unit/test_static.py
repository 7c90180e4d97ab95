"""`static_response`: files from the public folder, folders' index.html, traversal refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pubsocket.web.static import static_response


@pytest.fixture
def public(tmp_path: Path) -> Path:
    root = tmp_path / "public"
    (root / "docs" / "empty").mkdir(parents=True)
    (root / "index.html").write_text("<p>home</p>")
    (root / "docs" / "index.html").write_text("<p>docs</p>")
    (root / "docs" / "a.txt").write_text("hello")
    (tmp_path / "secret.txt").write_text("outside")
    return root


def body(public: Path, path: str) -> bytes | None:
    r = static_response(public, path)
    return None if r is None else r.body


def test_file(public: Path) -> None:
    r = static_response(public, "/docs/a.txt")
    assert r is not None
    assert r.status == 200
    assert r.body == b"hello"


@pytest.mark.parametrize(("path", "expected"), [
    ("/", b"<p>home</p>"), ("", b"<p>home</p>"), ("/docs", b"<p>docs</p>"),
    ("/docs/", b"<p>docs</p>"),
])
def test_index_html_for_folders(public: Path, path: str, expected: bytes) -> None:
    assert body(public, path) == expected


def test_folder_without_index_is_not_found(public: Path) -> None:
    assert static_response(public, "/docs/empty/") is None


def test_missing_file_and_no_public_dir(public: Path) -> None:
    assert static_response(public, "/nope.txt") is None
    assert static_response(None, "/index.html") is None


def test_dot_dot_inside_the_root_is_fine(public: Path) -> None:
    assert body(public, "/docs/../docs/a.txt") == b"hello"


@pytest.mark.parametrize("path", [
    "/../secret.txt", "/docs/../../secret.txt", "../secret.txt", "/docs/../../public/../secret.txt",
    "/..", "/../", "/../../../../../../etc/passwd",
])
def test_traversal_is_refused(public: Path, path: str) -> None:
    assert static_response(public, path) is None


def test_absolute_paths_stay_inside_the_root(public: Path, tmp_path: Path) -> None:
    outside = str(tmp_path / "secret.txt")
    assert static_response(public, outside) is None
    assert static_response(public, "//" + outside.lstrip("/")) is None
    assert static_response(public, "/etc/passwd") is None


@pytest.mark.parametrize("path", ["/index.html\x00", "/docs/a.txt\x00.png", "/\x00"])
def test_nul_is_refused(public: Path, path: str) -> None:
    assert static_response(public, path) is None


def test_symlink_escaping_the_root_is_refused(public: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "secret.txt", public / "link.txt")
    os.symlink(tmp_path, public / "up")
    assert static_response(public, "/link.txt") is None
    assert static_response(public, "/up/secret.txt") is None


def test_symlink_inside_the_root_is_served(public: Path) -> None:
    os.symlink(public / "docs" / "a.txt", public / "alias.txt")
    assert body(public, "/alias.txt") == b"hello"


def test_symlinked_root_works(public: Path, tmp_path: Path) -> None:
    os.symlink(public, tmp_path / "www")
    assert body(tmp_path / "www", "/docs/a.txt") == b"hello"
    assert static_response(tmp_path / "www", "/../secret.txt") is None


@pytest.mark.parametrize(("name", "ctype"), [
    ("page.html", "text/html; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("notes.txt", "text/plain; charset=utf-8"),
    ("data.json", "application/json; charset=utf-8"),
    ("image.png", "image/png"),
    ("blob.unknownext", "application/octet-stream"),
    ("noextension", "application/octet-stream"),
])
def test_content_types(public: Path, name: str, ctype: str) -> None:
    (public / name).write_bytes(b"x")
    r = static_response(public, "/" + name)
    assert r is not None
    assert r.content_type == ctype


def test_javascript_is_served_as_utf8_javascript(public: Path) -> None:
    (public / "app.js").write_text("1")
    r = static_response(public, "/app.js")
    assert r is not None
    assert r.content_type.split(";")[0] in ("text/javascript", "application/javascript")
    assert r.content_type.endswith("; charset=utf-8")
