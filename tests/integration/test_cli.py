"""The ``pubsocket`` command run as a real subprocess with a controlled environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

from pubsocket import Settings, load_app

SECRET = "cli-secret-0123456789abcdef0123456789abcdef"
API_KEY = "cli-api-key-0123456789abcdef0123456789"
_CLEARED = {"API_KEY", "SECRET", "HOST", "PORT", "TINA4_DEBUG_LEVEL"}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in _CLEARED and not k.startswith("PUBSOCKET_")}
    env.update(extra)
    return env


def pubsocket(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pubsocket", *args],
        cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=30,
    )


def assert_clean_failure(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("pubsocket: ")
    for word in words:
        assert word in done.stderr
    assert done.stdout == ""


# -- token ------------------------------------------------------------------------------


def test_token_prints_a_jwt_signed_with_the_secret(tmp_path: Path) -> None:
    before = time.time()
    done = pubsocket(tmp_path, "token", "--sub", "alice", "--ttl", "120",
                     "--claims", '{"room": "lobby", "admin": false}', SECRET=SECRET)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.count(".") == 2
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["room"] == "lobby"
    assert claims["admin"] is False
    assert claims["exp"] - claims["iat"] == 120
    assert before + 118 <= claims["exp"] <= time.time() + 121
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, SECRET[::-1], algorithms=["HS256"])


def test_token_default_ttl_is_an_hour_and_pubsocket_secret_works(tmp_path: Path) -> None:
    done = pubsocket(tmp_path, "token", PUBSOCKET_SECRET=SECRET)
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(done.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 3600
    assert "sub" not in claims


def test_token_reads_secret_from_dotenv_in_cwd(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"SECRET={SECRET}\n")
    done = pubsocket(tmp_path, "token", "--sub", "x")
    assert done.returncode == 0, done.stderr
    assert jwt.decode(done.stdout.strip(), SECRET, algorithms=["HS256"])["sub"] == "x"


def test_token_without_secret_exits_2_with_a_message(tmp_path: Path) -> None:
    done = pubsocket(tmp_path, "token", "--sub", "x", API_KEY=API_KEY)
    assert_clean_failure(done, "SECRET")


def test_token_claims_must_be_an_object(tmp_path: Path) -> None:
    done = pubsocket(tmp_path, "token", "--claims", "[1, 2]", SECRET=SECRET)
    assert_clean_failure(done, "--claims")


def test_token_claims_that_are_not_json_exit_2_without_traceback(tmp_path: Path) -> None:
    done = pubsocket(tmp_path, "token", "--claims", "{room: lobby}", SECRET=SECRET)
    assert_clean_failure(done, "--claims")


# -- init -----------------------------------------------------------------------------------


def test_init_scaffolds_a_project_that_loads(tmp_path: Path) -> None:
    done = pubsocket(tmp_path, "init", "myapp")
    assert done.returncode == 0, done.stderr
    project = tmp_path / "myapp"
    assert (project / "src" / "routes" / "app.py").is_file()
    assert (project / "src" / "public" / "index.html").is_file()
    assert "myapp" in done.stdout
    app = load_app(project, Settings())
    routes = {(r.method, r.path) for r in app.router}
    assert ("GET", "/hello/{name}") in routes
    assert ("GET", "/ws/chat") in routes


def test_init_refuses_an_existing_project(tmp_path: Path) -> None:
    assert pubsocket(tmp_path, "init", "myapp").returncode == 0
    app_py = tmp_path / "myapp" / "src" / "routes" / "app.py"
    app_py.write_text("# mine\n")
    done = pubsocket(tmp_path, "init", "myapp")
    assert_clean_failure(done, "already exists")
    assert app_py.read_text() == "# mine\n"


# -- env --------------------------------------------------------------------------------


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_env_writes_api_key_and_secret_to_a_new_file(tmp_path: Path) -> None:
    target = tmp_path / "conf.env"
    done = pubsocket(tmp_path, "env", "--file", str(target))
    assert done.returncode == 0, done.stderr
    values = read_env(target)
    assert set(values) == {"API_KEY", "SECRET"}
    assert len(values["API_KEY"]) >= 32
    assert len(values["SECRET"]) >= 32
    assert values["API_KEY"] != values["SECRET"]
    settings = Settings.from_env(environ={}, env_file=target)
    assert settings.api_key == values["API_KEY"]
    assert settings.secret == values["SECRET"]


def test_env_is_idempotent(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    assert pubsocket(tmp_path, "env").returncode == 0
    first = target.read_text()
    done = pubsocket(tmp_path, "env")
    assert done.returncode == 0
    assert target.read_text() == first


def test_env_keeps_existing_lines_and_adds_only_what_is_missing(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    original = "# my settings\nPORT=9000\nAPI_KEY=keep-this-key\nPUBSOCKET_BROKER=memory://"
    target.write_text(original)  # no trailing newline
    done = pubsocket(tmp_path, "env", "--file", str(target))
    assert done.returncode == 0, done.stderr
    text = target.read_text()
    assert text.startswith(original + "\n")
    values = read_env(target)
    assert values["API_KEY"] == "keep-this-key"
    assert values["PORT"] == "9000"
    assert len(values["SECRET"]) >= 32
    assert text.count("API_KEY=") == 1
    assert text.count("SECRET=") == 1


def test_env_recognises_export_lines(tmp_path: Path) -> None:
    # python-dotenv reads `export NAME=value`; adding a second API_KEY line after it
    # would silently replace the user's key (the last definition wins)
    target = tmp_path / ".env"
    target.write_text("export API_KEY=keep-this-key\n")
    assert pubsocket(tmp_path, "env").returncode == 0
    assert Settings.from_env(environ={}, env_file=target).api_key == "keep-this-key"
    assert target.read_text().count("API_KEY=") == 1
    assert len(read_env(target)["SECRET"]) >= 32


def test_env_fresh_values_each_time(tmp_path: Path) -> None:
    a, b = tmp_path / "a.env", tmp_path / "b.env"
    assert pubsocket(tmp_path, "env", "--file", str(a)).returncode == 0
    assert pubsocket(tmp_path, "env", "--file", str(b)).returncode == 0
    assert read_env(a)["SECRET"] != read_env(b)["SECRET"]
    assert read_env(a)["API_KEY"] != read_env(b)["API_KEY"]


# -- serve ------------------------------------------------------------------------------

SECURED_ROUTES = '''
from pubsocket import get, secured


@secured()
@get("/private")
async def private(request, response):
    return response({"ok": True})
'''


def secured_project(root: Path) -> Path:
    routes = root / "proj" / "src" / "routes"
    routes.mkdir(parents=True)
    (routes / "app.py").write_text(SECURED_ROUTES)
    return root / "proj"


def test_serve_secured_routes_without_key_or_secret_exits_2(tmp_path: Path) -> None:
    project = secured_project(tmp_path)
    done = pubsocket(tmp_path, "serve", str(project), "--port", "0")
    assert_clean_failure(done, "API_KEY", "SECRET")


def test_serve_with_a_bad_port_variable_exits_2(tmp_path: Path) -> None:
    project = secured_project(tmp_path)
    done = pubsocket(tmp_path, "serve", str(project), PORT="http", SECRET=SECRET)
    assert_clean_failure(done, "PORT")


def test_serve_missing_project_exits_2(tmp_path: Path) -> None:
    done = pubsocket(tmp_path, "serve", str(tmp_path / "nothing"), SECRET=SECRET)
    assert_clean_failure(done, "routes")


# -- app folders outside the working directory ------------------------------------------


def test_init_writes_a_private_env_with_random_secrets(tmp_path: Path) -> None:
    assert pubsocket(tmp_path, "init", "one").returncode == 0
    assert pubsocket(tmp_path, "init", "two").returncode == 0
    one, two = read_env(tmp_path / "one" / ".env"), read_env(tmp_path / "two" / ".env")
    assert set(one) == {"API_KEY", "SECRET"}
    assert len(one["SECRET"]) >= 32 and one["SECRET"] != two["SECRET"]
    assert one["API_KEY"] != two["API_KEY"]
    assert (tmp_path / "one" / ".env").stat().st_mode & 0o777 == 0o600


def test_init_then_serve_from_another_directory_uses_the_folders_env(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert pubsocket(tmp_path, "init", "myapp").returncode == 0
    values = read_env(tmp_path / "myapp" / ".env")
    # `serve` prints its token and then serves until stopped: start it, read, stop it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pubsocket", "serve", str(tmp_path / "myapp"), "--port", "0"],
        cwd=elsewhere, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for _ in range(20):  # log lines, then the connect help (readline: test timeout)
            lines.append(proc.stdout.readline())
            if lines[-1].lstrip().startswith("Token:"):
                break
        assert any(line.startswith("pubsocket serving on http://127.0.0.1:") for line in lines)
        token = lines[-1].split()[-1]
        assert jwt.decode(token, values["SECRET"], algorithms=["HS256"])["sub"] == "cli"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def test_token_reads_the_app_folders_env_and_the_environment_wins(tmp_path: Path) -> None:
    assert pubsocket(tmp_path, "init", "myapp").returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".env").write_text("SECRET=from-the-current-directory-0123456789abcdef\n")
    folder_secret = read_env(tmp_path / "myapp" / ".env")["SECRET"]
    done = pubsocket(elsewhere, "token", "--app", str(tmp_path / "myapp"), "--sub", "a")
    assert done.returncode == 0, done.stderr
    assert jwt.decode(done.stdout.strip(), folder_secret, algorithms=["HS256"])["sub"] == "a"
    # without the folder's .env, the current directory's is used
    done = pubsocket(elsewhere, "token", "--sub", "b")
    assert jwt.decode(done.stdout.strip(), "from-the-current-directory-0123456789abcdef",
                      algorithms=["HS256"])["sub"] == "b"
    # the environment wins over both files
    done = pubsocket(elsewhere, "token", "--app", str(tmp_path / "myapp"), SECRET=SECRET)
    jwt.decode(done.stdout.strip(), SECRET, algorithms=["HS256"])


def test_token_without_secret_advises_the_folders_env(tmp_path: Path) -> None:
    done = pubsocket(tmp_path, "token", "--app", "proj")
    assert_clean_failure(done, "SECRET", "proj/.env", "pubsocket env --file proj/.env")


def test_env_app_writes_into_the_folder(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    done = pubsocket(tmp_path, "env", "--app", "proj")
    assert done.returncode == 0, done.stderr
    assert set(read_env(tmp_path / "proj" / ".env")) == {"API_KEY", "SECRET"}
    assert not (tmp_path / ".env").exists()


def test_serve_without_secrets_advises_the_folders_env_not_make_run(tmp_path: Path) -> None:
    project = secured_project(tmp_path)
    done = pubsocket(tmp_path, "serve", str(project), "--port", "0")
    assert_clean_failure(done, f"{project}/.env", f"pubsocket env --file {project}/.env")
    assert "make run" not in done.stderr


def test_serve_reads_the_folders_env_from_another_directory(tmp_path: Path) -> None:
    project = secured_project(tmp_path)
    (project / ".env").write_text("PORT=http\n")  # proves the folder's file is the one read
    done = pubsocket(tmp_path, "serve", str(project))
    assert_clean_failure(done, "PORT")


def test_init_names_a_command_that_runs_from_here(tmp_path: Path) -> None:
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "pubsocket").is_file()
    # pubsocket is not on PATH (the venv is not activated): the venv's path is printed
    done = pubsocket(tmp_path, "init", "a", PATH="/usr/bin:/bin")
    assert done.stdout.splitlines()[-1] == f"created a; run: {venv_bin / 'pubsocket'} serve a"
    # activated: the plain name
    done = pubsocket(tmp_path, "init", "b", PATH=f"{venv_bin}:/usr/bin:/bin")
    assert done.stdout.splitlines()[-1] == "created b; run: pubsocket serve b"


def test_serve_lists_the_pages_of_the_chat_example(tmp_path: Path) -> None:
    # `make run` serves examples/chat: its help names the demo, the ops page and the
    # Centrifuge endpoint, each on the port actually bound.
    chat = Path(__file__).resolve().parents[2] / "examples" / "chat"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pubsocket", "serve", str(chat), "--port", "0"],
        cwd=tmp_path, env=clean_env(API_KEY="k" * 32, SECRET="s" * 40),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for _ in range(30):  # log lines, then the connect help (readline: test timeout)
            lines.append(proc.stdout.readline())
            if lines[-1].lstrip().startswith("Token:"):
                break
        head = next(line for line in lines if line.startswith("pubsocket serving on"))
        base = head.split()[-1].removeprefix("http://")
        shown = [line.split() for line in lines if line.startswith("  ")]
        assert ["Open:", f"http://{base}/"] in shown
        assert ["Ops", "page:", f"http://{base}/admin"] in shown
        assert ["Centrifuge:", f"ws://{base}/connection/websocket"] in shown
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
