#!/usr/bin/env bash
# centrifuge-js's own transport tests (websocket, http_stream, sse; JSON and Protobuf)
# against a pubsocket server, as the suite runs them against Centrifugo.
#
# The SDK's repository is cloned at a pinned tag into .cache/centrifuge-js (never
# committed here), its dev dependencies installed with npm, its tests pointed at a
# local pubsocket server (conformance/centrifuge_js/app.py on a free port instead of
# Centrifugo on localhost:8000), and jest runs the tests named "<transport>: ..." and
# the Protobuf transport tests. Tests of features pubsocket does not have (map and
# shared-poll subscriptions, deltas) are not selected.
#
# Environment: CENTRIFUGE_JS_TAG (default 5.7.1, the newest tag with these tests),
#              CENTRIFUGE_JS_REPO (default the GitHub repository; a local clone works),
#              PYTHON (default .venv/bin/python).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
tag=${CENTRIFUGE_JS_TAG:-5.7.1}
repo=${CENTRIFUGE_JS_REPO:-https://github.com/centrifugal/centrifuge-js}
python=${PYTHON:-.venv/bin/python}
cache="$root/.cache/centrifuge-js"
src="$cache/$tag"

if [ ! -d "$src/node_modules" ]; then
    rm -rf "$src"
    mkdir -p "$cache"
    git clone --quiet --depth 1 --branch "$tag" "$repo" "$src"
    (cd "$src" && npm install --no-audit --no-fund --legacy-peer-deps --ignore-scripts >/dev/null)
fi

port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The suite's endpoints, pointed at this server (a fresh copy of the test files each run).
(cd "$src" && git checkout --quiet -- src)
sed -i "s#localhost:8000#127.0.0.1:$port#g" "$src"/src/*.test.ts

"$python" conformance/centrifuge_js/app.py "$port" >"$cache/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

cd "$src"
status=0
npx jest src/centrifuge.test.ts -t '^(websocket|http_stream|sse): ' --forceExit || status=$?
npx jest src/centrifuge.protobuf.test.ts --forceExit || status=$?
exit $status
