#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan + UBSan) and runs each over a seed corpus made from the
# shared data's real files and small synthetic ones.
#   bash scripts/fuzz.sh                 # the long run: 10,000,000 executions per target
#   bash scripts/fuzz.sh --runs N        # N executions per target
#   bash scripts/fuzz.sh --seconds S     # S seconds per target
#   bash scripts/fuzz.sh --ci            # CI: 20,000 executions per target with a fixed seed (deterministic)
# Needs: apt-get install clang-14 libclang-rt-14-dev nlohmann-json3-dev. Findings (crash-*, leak-*,
# timeout-*) land in build-fuzz/findings/<target>/ and make the script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATA="${ENTROPRUNE_TEST_DATA:-$ROOT/../shared/data}"
LIMIT=(-runs=10000000)
case "${1:-}" in
  --runs) LIMIT=(-runs="$2") ;;
  --seconds) LIMIT=(-max_total_time="$2") ;;
  --ci) LIMIT=(-runs=20000 -seed=1) ;;
  "") ;;
  *) echo "usage: fuzz.sh [--runs N | --seconds S]"; exit 2 ;;
esac
command -v clang++-14 >/dev/null || { echo "clang++-14 not found: apt-get install clang-14 libclang-rt-14-dev"; exit 1; }
CC=clang-14 CXX=clang++-14 cmake -S native/fuzz -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$(nproc)" >/dev/null

SEEDS=build-fuzz/seeds
rm -rf "$SEEDS"
mkdir -p "$SEEDS"/{gguf,llama2c,safetensors,tokenizer}
build-fuzz/make_seeds "$SEEDS"
if [ -d "$DATA/models" ]; then
  cp "$DATA/models/stories260K/stories260K.gguf" "$SEEDS/gguf/"
  cp "$DATA/models/stories260K/stories260K.bin" "$SEEDS/llama2c/"
  cp "$DATA/models/stories260K/tok512.bin" "$SEEDS/tokenizer/"
  # the real HF config + the first 64 KiB of its safetensors (header intact, data cut: a truncation seed)
  { cat "$DATA/models/tinystories-656K/config.json"; printf '\0'; head -c 65536 "$DATA/models/tinystories-656K/model.safetensors"; } > "$SEEDS/safetensors/tinystories.in"
fi

ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export ASAN_OPTIONS UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for t in gguf safetensors llama2c tokenizer; do
  corpus=build-fuzz/corpus/$t findings=build-fuzz/findings/$t
  mkdir -p "$corpus" "$findings"
  echo "== fuzz_$t (${LIMIT[*]})"
  if ! build-fuzz/fuzz_$t "$corpus" "$SEEDS/$t" "${LIMIT[@]}" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
       -artifact_prefix="$findings/" -print_final_stats=1 2>build-fuzz/$t.log; then
    echo "fuzz_$t found a problem:"; tail -40 build-fuzz/$t.log; status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" build-fuzz/$t.log | tr '\n' ' '; echo
  fi
done
exit $status
