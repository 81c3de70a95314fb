#!/usr/bin/env bash
# Sets up, builds, and runs the main job on the embedded default: text generation from the demo
# model in models/brown-demo (a small DeepSeek-V3-architecture MoE trained by `dseek train` on the
# Brown Corpus, byte-level vocabulary). Extra arguments go to `dseek generate` (e.g. --prompt "...").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD_DIR=${DSEEK_BUILD_DIR:-build}
exec "$BUILD_DIR/dseek" generate --model models/brown-demo --prompt "The jury said" -n 200 \
  --temperature 0.8 --top-p 0.95 --seed 1 "$@"
