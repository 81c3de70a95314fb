#!/usr/bin/env bash
# End-to-end tests of `dseek serve`: the official openai npm client (pinned in package-lock.json)
# for completions, chat, streaming, reasoning and tools; curl for the error paths. Called by ctest
# with the dseek binary; installs the npm package on first use.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export DSEEK_BIN=${1:?usage: run.sh PATH/TO/dseek}
export DSEEK_SOURCE_DIR=${DSEEK_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
export DSEEK_SHARED_DIR=${DSEEK_SHARED_DIR:-$DSEEK_SOURCE_DIR/../shared}
command -v node >/dev/null || { echo "run.sh: node is missing (scripts/setup.sh installs it)" >&2; exit 1; }
command -v curl >/dev/null || { echo "run.sh: curl is missing (scripts/setup.sh installs it)" >&2; exit 1; }
if [ ! -f "$here/node_modules/openai/package.json" ]; then
  npm ci --prefix "$here" --no-audit --no-fund --loglevel=error >&2
fi
exec node --test --test-concurrency=1 "$here/serve.test.mjs"
