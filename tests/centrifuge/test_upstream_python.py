"""centrifuge-python's own live suite against pubsocket (issue 18, "Done when").

The PyPI sdist of centrifuge-python 0.7.0 ships the SDK's tests (`tests/test_client.py`)
and the `docker-compose.yml` whose Centrifugo they run against. This test downloads the
sdist once into `.cache/upstream/` (gitignored; reused when present, checked against its
SHA-256), extracts its `tests/`, changes only the server address (``localhost:8000`` ->
this server) and the Protobuf switch (each live test loops ``for use_protobuf in (False,
True)``; one run keeps ``(False,)``, the other ``(True,)``), serves pubsocket configured
by `upstream_config.json` (that docker-compose.yml's ``CENTRIFUGO_*`` settings as a
Centrifugo v6 JSON config) and runs the suite with pytest in a subprocess. Every test
must pass except the named ones in `EXPECTED_FAILURES`, which must fail (so the list
shrinks as the features land). The upstream code is never committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.centrifuge_js.upstream_server import upstream_app

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "upstream"
REQUIREMENT = "centrifuge-python==0.7.0"
SDIST = "centrifuge_python-0.7.0.tar.gz"
SDIST_SHA256 = "11252b45c3f6b6104cfb07fb0fcfc9d2d62832d2af14715dd16fdc5e9c6e5964"
CONFIG = Path(__file__).with_name("upstream_config.json")
SUITE = "tests/test_client.py"
BOTH = "for use_protobuf in (False, True):"
LOOPS = 22  # the live tests that loop over both wires (a changed file fails loudly)
SUITE_TIMEOUT = 600.0
# Token helpers the suite names test_* (upstream runs it with unittest, which ignores
# them; pytest would collect them as failing tests).
NOT_TESTS = ("test_get_client_token", "test_get_subscription_token")

# test id (class::method) -> why it fails against pubsocket, and whose work fixes it.
EXPECTED_FAILURES: dict[str, str] = {}


def sdist() -> Path:
    """The cached sdist, downloaded by pip when missing; its hash is checked."""
    path = CACHE / SDIST
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", REQUIREMENT, "--no-binary", ":all:",
             "--no-deps", "--disable-pip-version-check", "-q", "-d", str(CACHE)],
            check=True, timeout=120)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == SDIST_SHA256, f"{path}: unexpected sha256 {digest}"
    return path


def extract_suite(into: Path, port: int, protobuf: bool) -> None:
    """The sdist's tests/ under `into`, pointed at 127.0.0.1:`port`, one wire only."""
    prefix = SDIST.removesuffix(".tar.gz") + "/tests/"
    with tarfile.open(sdist()) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
        for member in members:
            member.name = "tests/" + member.name.removeprefix(prefix)
        tar.extractall(into, members=members, filter="data")
    address = f"127.0.0.1:{port}"
    for name in ("centrifugo.py", "test_client.py"):
        path = into / "tests" / name
        text = path.read_text(encoding="utf-8")
        assert "localhost:8000" in text
        path.write_text(text.replace("localhost:8000", address), encoding="utf-8")
    path = into / SUITE
    text = path.read_text(encoding="utf-8")
    assert text.count(BOTH) == LOOPS, text.count(BOTH)
    one = "(True,)" if protobuf else "(False,)"
    path.write_text(text.replace(BOTH, f"for use_protobuf in {one}:"), encoding="utf-8")
    # The suite's own settings, not ours (pyproject's filterwarnings=error, asyncio mode).
    (into / "pytest.ini").write_text("[pytest]\ntimeout = 60\n", encoding="utf-8")


def outcomes(report: Path) -> dict[str, str]:
    """test id -> "passed" / "failed" / "skipped" from pytest's JUnit XML (a test with a
    failing subtest counts as failed)."""
    found: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rpartition('.')[2]}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            found[name] = "failed"
        elif case.find("skipped") is not None:
            found.setdefault(name, "skipped")
        else:
            found.setdefault(name, "passed")
    return found


async def run_suite(workdir: Path) -> tuple[dict[str, str], str]:
    """Run the extracted suite (bounded); its outcomes and the tail of its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    report = workdir / "report.xml"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-c", "pytest.ini", "-p", "no:cacheprovider",
        "-p", "no:randomly", "-p", "no:valkey", "--junitxml", str(report),
        *(f"--deselect={SUITE}::{name}" for name in NOT_TESTS), SUITE,
        cwd=workdir, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(SUITE_TIMEOUT):
            output, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = output.decode(errors="replace")
    assert report.is_file(), text[-4000:]
    return outcomes(report), text[-6000:]


@pytest.mark.timeout(SUITE_TIMEOUT + 60)
@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_centrifuge_python_suite(serve: Any, tmp_path: Path, protobuf: bool) -> None:
    srv = await serve(upstream_app(CONFIG))
    extract_suite(tmp_path, srv.port, protobuf)
    found, output = await run_suite(tmp_path)
    failed = sorted(name for name, result in found.items() if result == "failed")
    passed = sum(result == "passed" for result in found.values())
    print(f"centrifuge-python 0.7.0 {SUITE} ({'Protobuf' if protobuf else 'JSON'}): "
          f"{passed} passed, {len(failed)} failed of {len(found)}")
    assert len(found) == 62, output
    assert set(failed) == set(EXPECTED_FAILURES), output
    assert all(found[name] == "failed" for name in EXPECTED_FAILURES)
