# Shared start of the shell e2e tests: sourced with the dseek binary as $1; sets bin, model (the
# demo checkpoint), tmp (removed on exit) and fail().
set -u
bin=$1
model=${DSEEK_SOURCE_DIR:?}/models/brown-demo
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
