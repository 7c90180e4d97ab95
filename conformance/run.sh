#!/usr/bin/env bash
# Autobahn|Testsuite conformance run against a pubsocket server.
#
# wstest (autobahntestsuite) is Python-2 code, so it lives in its own
# CPython 2.7 virtualenv under .cache/autobahn/py27, built from the pins in
# conformance/requirements-py27.txt and reused while those pins are unchanged.
#
# Environment:
#   CONFORMANCE_SERVER_CMD  server command, "{port}" is replaced by a free port
#                           (default: the echo example on 127.0.0.1)
#   CONFORMANCE_PY27        CPython 2.7 interpreter (default: pyenv's 2.7.18)
#   CONFORMANCE_PY3         Python 3 used to bootstrap virtualenv (default: python3)
#   CONFORMANCE_TIMEOUT     seconds allowed for wstest (default: 600)
#   CONFORMANCE_CASES       JSON list of case patterns (default: 1-7, 9, 10 and a
#                           quick subset of 12 and 13, permessage-deflate)
set -euo pipefail

started=$(date +%s)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

cache="$root/.cache/autobahn"
reqs="$root/conformance/requirements-py27.txt"
env27="$cache/py27"
reports="$cache/reports"
server_log="$cache/server.log"
server_cmd=${CONFORMANCE_SERVER_CMD:-".venv/bin/python -m pubsocket serve examples/echo --host 127.0.0.1 --port {port}"}
# permessage-deflate, quick: cases 12 (payload kinds) and 13 (parameter sets), sizes
# 16 B, 1 KiB and 8 KiB (ids X.Y.1, X.Y.4, X.Y.6; a pattern without "*" is one case id).
# The full set: CONFORMANCE_CASES='["12.*", "13.*"]'.
deflate_cases=""
for group in 12.1 12.2 12.3 12.4 12.5 13.1 13.2 13.3 13.4 13.5 13.6 13.7; do
    for n in 1 4 6; do deflate_cases+=", \"$group.$n\""; done
done
cases=${CONFORMANCE_CASES:-"[\"1.*\", \"2.*\", \"3.*\", \"4.*\", \"5.*\", \"6.*\", \"7.*\", \"9.*\", \"10.*\"$deflate_cases]"}
wstest_timeout=${CONFORMANCE_TIMEOUT:-600}
py3=${CONFORMANCE_PY3:-python3}

log() { printf 'conformance: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

find_py27() {
    if [[ -n ${CONFORMANCE_PY27:-} ]]; then
        printf '%s\n' "$CONFORMANCE_PY27"; return
    fi
    local pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
    if command -v pyenv >/dev/null 2>&1; then
        pyenv_root=$(pyenv root)
    fi
    local candidate
    for candidate in "$pyenv_root/versions/2.7.18/bin/python2.7" "$(command -v python2.7 || true)"; do
        if [[ -n $candidate && -x $candidate ]]; then
            printf '%s\n' "$candidate"; return
        fi
    done
    die "no CPython 2.7 found (install it with 'pyenv install 2.7.18' or set CONFORMANCE_PY27)"
}

# --- the wstest environment -------------------------------------------------

# Each step ends in "|| return": errexit does not apply inside a function
# called as an "if" condition.
build_env() {
    local py27=$1 boot="$cache/bootstrap"
    # virtualenv < 20.22 is the last line that can still create 2.7 envs; it
    # embeds pip 20.3.4 / setuptools 44.1.1 wheels for them, so nothing but
    # PyPI packages is fetched.
    if [[ ! -x $boot/bin/virtualenv ]]; then
        rm -rf "$boot"
        "$py3" -m venv "$boot" || return
        "$boot/bin/python" -m pip install --disable-pip-version-check 'virtualenv<20.22' || return
    fi
    # Built in place (virtualenv bakes its path into scripts); the stamp,
    # written last by ensure_env, marks a complete env, so an interrupted
    # build is redone.
    rm -rf "$env27"
    "$boot/bin/virtualenv" --no-periodic-update --app-data "$cache/virtualenv-data" \
        -p "$py27" "$env27" || return
    # pip 20.3.4 on 2.7 prints a deprecation banner on every call; hush it.
    PYTHONWARNINGS=ignore "$env27/bin/python" -m pip install \
        --disable-pip-version-check --no-python-version-warning -r "$reqs" || return
    "$env27/bin/python" -c 'import autobahntestsuite, autobahn.twisted, wsaccel, ujson'
}

ensure_env() {
    local py27 stamp want
    py27=$(find_py27)
    want="$(sha256sum "$reqs" | cut -d' ' -f1) $py27"
    stamp="$env27/.pins-stamp"
    if [[ -x $env27/bin/wstest && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        return
    fi
    log "building the wstest env in $env27 (once; about a minute)"
    mkdir -p "$cache"
    local build_log="$cache/build.log"
    if ! build_env "$py27" >"$build_log" 2>&1; then
        tail -n 40 "$build_log" >&2
        die "building the wstest env failed (full log: $build_log)"
    fi
    printf '%s\n' "$want" >"$stamp"
}

# --- the server under test --------------------------------------------------

server_pid=""
wstest_pid=""
spec_dir=""
cleanup() {
    if [[ -n $wstest_pid ]]; then
        kill -TERM "$wstest_pid" 2>/dev/null || true  # timeout passes it on to wstest
        wait "$wstest_pid" 2>/dev/null || true
        wstest_pid=""
    fi
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        # The server runs in its own session (setsid), so its process group
        # id is its pid: this ends it and any workers it forked.
        kill -TERM -- "-$server_pid" 2>/dev/null || kill -TERM "$server_pid" 2>/dev/null || true
        local _
        for _ in $(seq 1 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$server_pid" 2>/dev/null || true
    fi
    if [[ -n $spec_dir ]]; then rm -rf "$spec_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$py3" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_server() {
    local port=$1 cmd
    cmd=${server_cmd//\{port\}/$port}
    log "server: $cmd"
    mkdir -p "$cache"
    if command -v setsid >/dev/null 2>&1; then
        setsid bash -c "exec $cmd" >"$server_log" 2>&1 </dev/null &
    else
        bash -c "exec $cmd" >"$server_log" 2>&1 </dev/null &
    fi
    server_pid=$!
    local _
    for _ in $(seq 1 150); do  # 150 x 0.1 s = 15 s
        if port_open "$port"; then return; fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            tail -n 30 "$server_log" >&2 || true
            die "server exited before listening on port $port"
        fi
        sleep 0.1
    done
    tail -n 30 "$server_log" >&2 || true
    die "server did not listen on port $port within 15 s"
}

# --- run ----------------------------------------------------------------------

ensure_env
env_ready=$(date +%s)

port=$(free_port)
start_server "$port"

spec_dir=$(mktemp -d)
rm -rf "$reports"
mkdir -p "$reports"
cat >"$spec_dir/spec.json" <<EOF
{
    "outdir": "$reports",
    "servers": [{"agent": "pubsocket", "url": "ws://127.0.0.1:$port/ws/echo"}],
    "cases": $cases,
    "exclude-cases": [],
    "exclude-agent-cases": {}
}
EOF

log "wstest -m fuzzingclient against ws://127.0.0.1:$port/ws/echo"
# In the background and waited for, so that INT/TERM reach our trap at once
# (bash runs traps only between foreground commands).
(cd "$spec_dir" && PYTHONWARNINGS=ignore exec timeout --kill-after=10 "$wstest_timeout" \
    "$env27/bin/wstest" -m fuzzingclient -s spec.json) >"$cache/wstest.log" 2>&1 &
wstest_pid=$!
wstest_rc=0
wait "$wstest_pid" || wstest_rc=$?
wstest_pid=""
if [[ $wstest_rc -ne 0 ]]; then
    tail -n 30 "$cache/wstest.log" >&2 || true
    if [[ $wstest_rc -eq 124 || $wstest_rc -eq 137 ]]; then
        log "wstest timed out after ${wstest_timeout} s"
    else
        log "wstest exited with status $wstest_rc"
    fi
fi
cleanup
server_pid=""

finished=$(date +%s)
log "env $((env_ready - started)) s, suite $((finished - env_ready)) s; reports in $reports (index.html)"
summary_rc=0
"$py3" "$root/conformance/summarize.py" --elapsed "$((finished - started))" \
    "$reports/index.json" || summary_rc=$?
if [[ $summary_rc -eq 0 && $wstest_rc -ne 0 ]]; then
    exit "$wstest_rc"
fi
exit "$summary_rc"
