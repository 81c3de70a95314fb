#!/usr/bin/env bash
# Sets up, builds, and runs the main job on the embedded default: a forward pass of the
# golden DeepSeek-V3 case (../shared/golden/model/v3) that prints the top next tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD_DIR=${DSEEK_BUILD_DIR:-build}
SHARED=${DSEEK_SHARED_DIR:-../shared}
MODEL="$SHARED/golden/model/v3"
exec "$BUILD_DIR/dseek" forward --model "$MODEL" --input-ids "$MODEL/golden.safetensors" \
  --output "$BUILD_DIR/v3_logits.safetensors" --decode-from 24 "$@"
