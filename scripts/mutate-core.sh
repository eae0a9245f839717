#!/usr/bin/env bash
# Mutation testing of the C++ core, by hand like the benchmarks (not in CI): each mutant of
# scripts/mutants/core.tsv is applied alone to a scratch copy of the tree, the core and its tests rebuilt,
# ctest run; a failing test kills the mutant, a passing suite lets it survive, a build failure or a text
# that no longer occurs exactly once marks it invalid (fix the list). Writes build-mutants/report.md with the
# score and every survivor, and exits 1 if any mutant survived.
#   bash scripts/mutate-core.sh [list.tsv]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LIST=${1:-scripts/mutants/core.tsv}
WORK=$ROOT/build-mutants
# the scratch copy lives elsewhere: point its tests at the real data
export ENTROPRUNE_TEST_DATA="${ENTROPRUNE_TEST_DATA:-$(cd "$ROOT/../shared/data" 2>/dev/null && pwd)}"
SRC=$WORK/src
mkdir -p "$WORK"
mkdir -p "$SRC"
# The tracked tree as committed plus working changes, without build outputs, synced into the scratch copy: a
# file is rewritten only when its content changed (its time is then now, newer than any object built from the
# old content), so a rerun rebuilds exactly what changed. (Copying with the sources' own times missed edits
# older than the scratch build's objects: a header changed between two runs left stale objects behind.)
git ls-files -z --cached --others --exclude-standard | grep -zv '^prebuilds/' | python3 -c '
import os, shutil, sys
src = sys.argv[1]
files = [f for f in sys.stdin.buffer.read().decode().split("\0") if f and os.path.isfile(f)]
keep = set()
for f in files:
    dst = os.path.join(src, f)
    keep.add(os.path.normpath(dst))
    with open(f, "rb") as a:
        data = a.read()
    if os.path.exists(dst):
        with open(dst, "rb") as b:
            if b.read() == data:
                continue
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "wb") as b:
        b.write(data)
    shutil.copymode(f, dst)
for root, _, names in os.walk(src):
    for n in names:
        p = os.path.normpath(os.path.join(root, n))
        if p not in keep:
            os.remove(p)
' "$SRC"
# CPU only: the CPU suite is what judges the mutants (the CUDA twins are not mutated)
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DENTROPRUNE_CUDA=OFF >/dev/null
cmake --build "$WORK/build" -j"$(nproc)" >/dev/null
echo "baseline:"; (cd "$WORK/build" && ctest -E '^Cuda' -j"$(nproc)" --timeout 600 >/dev/null) || { echo "the unmutated suite fails: fix that first"; exit 2; }
echo "  passes"

killed=0 survived=0 invalid=0
report=$WORK/report.md
{ echo "# C++ mutants ($(git rev-parse --short HEAD), $(date -u +%F))"; echo; echo "| result | file | bug |"; echo "|---|---|---|"; } > "$report"
while IFS=$'\t' read -r file from to what; do
  [[ -z "$file" || "$file" == \#* ]] && continue
  target=$SRC/$file
  cp "$target" "$target.orig"
  result=invalid
  if python3 - "$target" "$from" "$to" <<'PY'
import sys
path, a, b = sys.argv[1:4]
s = open(path).read()
if s.count(a) != 1:
    sys.exit(1)
open(path, 'w').write(s.replace(a, b))
PY
  then
    if cmake --build "$WORK/build" -j"$(nproc)" >/dev/null 2>&1; then
      if (cd "$WORK/build" && ctest -E '^Cuda' -j"$(nproc)" --timeout 600 >/dev/null 2>&1); then result=survived; else result=killed; fi
    fi
  fi
  mv "$target.orig" "$target"
  touch "$target"
  case $result in killed) killed=$((killed + 1)) ;; survived) survived=$((survived + 1)) ;; *) invalid=$((invalid + 1)) ;; esac
  echo "  $result: $file — $what"
  echo "| $result | \`$file\` | $what |" >> "$report"
done < "$LIST"
cmake --build "$WORK/build" -j"$(nproc)" >/dev/null
total=$((killed + survived))
score=$([ "$total" -gt 0 ] && echo "scale=1; 100 * $killed / $total" | bc || echo 0)
{ echo; echo "Score: $killed of $total killed ($score %); $invalid invalid."; } >> "$report"
echo "score: $killed of $total killed ($score %), $invalid invalid; report: $report"
[ "$survived" -eq 0 ]
