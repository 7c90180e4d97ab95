"""``pubsocket sub | pub | presence`` as real processes against a real server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from tests.client.helpers import chat_app, token, url
from tests.conftest import API_KEY

SRC = str(Path(__file__).resolve().parents[2] / "src")


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if k not in {"API_KEY", "SECRET"} and not k.startswith("PUBSOCKET_")}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, base.get("PYTHONPATH")]))
    return {**base, **extra}


async def start(*args: str, cwd: Path, **extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pubsocket", *args, cwd=cwd, env=env(**extra),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def run(*args: str, cwd: Path, **extra: str) -> tuple[int, str, str]:
    proc = await start(*args, cwd=cwd, **extra)
    async with asyncio.timeout(20):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def line(stream: asyncio.StreamReader | None, timeout: float = 15) -> str:
    assert stream is not None
    async with asyncio.timeout(timeout):
        return (await stream.readline()).decode()


async def test_pub_into_sub_across_two_processes(serve: Any, tmp_path: Path) -> None:
    srv = await serve(chat_app())
    (tmp_path / ".env").write_text(f"API_KEY={API_KEY}\n")  # the default token for `pub`
    sub = await start("sub", url(srv), "room", "--token", token("alice"), cwd=tmp_path)
    try:
        ready = await line(sub.stderr)
        found = re.fullmatch(r"pubsocket: subscribed to room \(epoch (\w+); resume with "
                             r"--since OFFSET:(\w+)\)\n", ready)
        assert found and found[1] == found[2], ready
        epoch = found[1]
        for n, data in enumerate(['{"text": "hi"}', '"two"', "[3]"], start=1):
            code, out, err = await run("pub", url(srv), "room", data, cwd=tmp_path)
            assert (code, err) == (0, ""), err
            assert json.loads(out) == {"offset": n}
        got = [json.loads(await line(sub.stdout)) for _ in range(3)]
        assert got == [{"topic": "room", "offset": 1, "data": {"text": "hi"}},
                       {"topic": "room", "offset": 2, "data": "two"},
                       {"topic": "room", "offset": 3, "data": [3]}]
        sub.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await sub.wait() == 0
    finally:
        if sub.returncode is None:
            sub.kill()
            await sub.wait()

    # --since recovers what came after a position, in order, once
    code, out, err = await run("pub", url(srv), "room", '"four"', cwd=tmp_path)
    assert code == 0, err
    again = await start("sub", url(srv), "room", "--since", f"2:{epoch}", cwd=tmp_path)
    try:
        assert f"(epoch {epoch};" in await line(again.stderr)
        assert [json.loads(await line(again.stdout))["data"] for _ in range(2)] == [[3],
                                                                                   "four"]
        again.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await again.wait() == 0
    finally:
        if again.returncode is None:
            again.kill()
            await again.wait()


async def test_presence_lists_and_counts(serve: Any, tmp_path: Path) -> None:
    srv = await serve(chat_app())
    sub = await start("sub", url(srv), "room", "--token", token("alice", info={"n": 1}),
                      cwd=tmp_path)
    try:
        await line(sub.stderr)
        code, out, err = await run("presence", url(srv), "room", "--token", API_KEY,
                                   cwd=tmp_path)
        assert code == 0, err
        assert list(json.loads(out).values()) == [{"user": "alice", "info": {"n": 1}}]
        code, out, err = await run("presence", url(srv), "room", "--stats", cwd=tmp_path,
                                   API_KEY=API_KEY)
        assert (code, json.loads(out)) == (0, {"connections": 1, "users": 1}), err
    finally:
        sub.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            await sub.wait()


async def test_friendly_errors(serve: Any, tmp_path: Path) -> None:
    srv = await serve(chat_app())
    code, out, err = await run("pub", url(srv), "room", "1", "--token", "wrong", cwd=tmp_path)
    assert (code, out, err) == (1, "", "pubsocket: the server refused the token (401): "
                                 "not the API key and not a valid JWT\n")
    code, out, err = await run("pub", url(srv), "room", "{not json", cwd=tmp_path)
    assert code == 2 and out == "" and err.startswith("pubsocket: the message is not valid")
    tok = token("alice", topics={"subscribe": ["chat:*"]})
    code, out, err = await run("sub", url(srv), "room", "--token", tok, cwd=tmp_path)
    assert (code, out) == (1, "") and err == ("pubsocket: forbidden on room: "
                                              "not allowed on this topic\n")
    code, _, err = await run("sub", url(srv), "room", "--since", "x", cwd=tmp_path)
    assert code == 2 and "OFFSET:EPOCH" in err
    for done in (code, err):
        assert "Traceback" not in str(done)


async def test_bad_urls_are_one_line_errors(tmp_path: Path) -> None:
    for bad in ("ws://127.0.0.1:notaport/ws", "ftp://x", "ws://[::1/ws"):
        code, out, err = await run("pub", bad, "room", "1", "--token", API_KEY, cwd=tmp_path)
        assert (code, out) == (1, ""), err
        assert err.startswith(f"pubsocket: {bad} is not a valid ws:// or wss:// URL")
        assert err.count("\n") == 1, err


async def test_ctrl_c_ends_every_command_promptly_and_quietly(tmp_path: Path) -> None:
    """Against a TCP server that never answers the handshake: each command is still
    connecting when SIGINT comes."""
    accepted: list[asyncio.StreamWriter] = []
    arrived = asyncio.Event()

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        arrived.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    endpoint = f"ws://127.0.0.1:{port}/ws/chat"
    try:
        for args in (("pub", endpoint, "room", "1"), ("presence", endpoint, "room"),
                     ("sub", endpoint, "room")):
            arrived.clear()
            proc = await start(*args, "--token", API_KEY, cwd=tmp_path)
            try:
                async with asyncio.timeout(15):
                    await arrived.wait()  # it is in the handshake now
                proc.send_signal(signal.SIGINT)
                async with asyncio.timeout(3):  # well before the 10 s open timeout
                    out, err = await proc.communicate()
                assert (proc.returncode, out, err) == (130, b"", b""), (args, err)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
