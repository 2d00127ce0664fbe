#!/usr/bin/env bash
# Lossy outputs at equal quality, measured in one run on the same files and cores:
#   imagepipe  `worker transform` (every core)
#   sharp      the npm package (its own libvips and libwebp/libaom builds), one image per core
#   libvips    `vipsthumbnail` (Debian), one process per core — WebP only (Debian's libheif
#              AV1 encoder is not what peers ship)
# at several qualities each: images/s (best of RUNS over the files x ROUNDS), total bytes, and
# the mean SSIMULACRA2 score (PyPI `ssimulacra2`; 90 = visually lossless, 70 = high quality,
# 50 = medium) of each output against the same tool's lossless PNG of the same resize, so the
# score is the encoder's at that size. Then, at each peer's default quality, what imagepipe
# needs for the same score (bytes and images/s interpolated between its qualities).
#   WebP: the large photos (12–18 MP) fit inside 1024 px;  AVIF: Kodak fit inside 256 px.
#
#   scripts/bench-quality.sh            # ROUNDS=2 RUNS=3 by default
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
ROUNDS=${ROUNDS:-2}
WEBP_QUALITIES=${WEBP_QUALITIES:-60 70 80 90}
AVIF_QUALITIES=${AVIF_QUALITIES:-40 50 60 70 80 90}

release_worker
find_sharp
python3 -c 'import ssimulacra2' 2>/dev/null || python3 -m pip install -q ssimulacra2

cat > "$OUT/sharp.js" <<'JS'
// node sharp.js OUTDIR FORMAT SIZE QUALITY CONCURRENCY FILES... : fit inside SIZE x SIZE,
// written as OUTDIR/<i>.<format> (i from 0); format png is the lossless reference.
const sharp = require('sharp');
const [out, format, size, quality, conc, ...files] = process.argv.slice(2);
sharp.concurrency(1);
const q = { quality: Number(quality) };
let next = 0;
async function worker() {
  while (next < files.length) {
    const n = next++;
    const img = sharp(files[n]).resize(Number(size), Number(size), { fit: 'inside' });
    const encoded = format === 'png' ? img.png() : format === 'webp' ? img.webp(q) : img.avif(q);
    await encoded.toFile(`${out}/${n}.${format}`);
  }
}
Promise.all(Array.from({ length: Number(conc) }, worker)).catch((e) => { console.error(e); process.exit(1); });
JS

cat > "$OUT/score.py" <<'PY'
# score.py THREADS < "reference output" lines : total bytes and mean SSIMULACRA2.
import os, sys
from multiprocessing import Pool
from ssimulacra2 import compute_ssimulacra2_with_alpha
def one(pair):
    ref, out = pair
    return os.path.getsize(out), compute_ssimulacra2_with_alpha(ref, out)
if __name__ == "__main__":
    pairs = [line.split() for line in sys.stdin if line.strip()]
    with Pool(int(sys.argv[1])) as pool:
        scores = pool.map(one, pairs)
    print(sum(b for b, _ in scores), sum(s for _, s in scores) / len(scores))
PY

# run TOOL FORMAT SIZE QUALITY DIR FILES... : makes DIR's outputs (png = the reference)
run() {
  local tool=$1 format=$2 size=$3 quality=$4 dir=$5; shift 5
  rm -rf "$dir"; mkdir -p "$dir"
  case $tool in
    imagepipe)
      "$WORKER" transform --threads "$THREADS" --out "$dir" "$@" --spec \
        "{\"outputs\":[{\"name\":\"o\",\"ops\":[{\"op\":\"resize\",\"width\":$size,\"height\":$size}],\"format\":\"$format\",\"quality\":$quality}]}" ;;
    sharp)
      NODE_PATH="$SHARP/node_modules" node "$OUT/sharp.js" "$dir" "$format" "$size" "$quality" "$THREADS" "$@" ;;
    vips)
      local save="$format[Q=$quality,strip]"
      [ "$format" = png ] && save=png
      printf '%s\n' "$@" | xargs -P "$THREADS" -n 1 -I F vipsthumbnail F -s "${size}x$size" -o "$dir/%s.$save" ;;
  esac
}
# made TOOL DIR FORMAT I FILE : the path of TOOL's output for the I-th (from 0) base FILE
made() {
  local stem; stem=$(basename "${5%.*}")
  case $1 in
    imagepipe) echo "$2/$stem/o.$3" ;;
    sharp) echo "$2/$4.$3" ;;
    vips) echo "$2/$stem.$3" ;;
  esac
}

ROWS="$OUT/rows"
: > "$ROWS"
# measure FORMAT SIZE SET QUALITIES TOOLS... : one row per tool and quality into $ROWS
measure() {
  local format=$1 size=$2 set=$3 qualities=$4; shift 4
  mapfile -t base < <(ls "$CORPUS/$set"/*.jpg)
  local files=()
  for _ in $(seq "$ROUNDS"); do files+=("${base[@]}"); done
  for tool in "$@"; do
    run "$tool" png "$size" 100 "$OUT/ref-$tool" "${base[@]}" >/dev/null
    for q in $qualities; do
      local dir="$OUT/$tool-$format-$q"
      rate=$(best_rate "${#files[@]}" run "$tool" "$format" "$size" "$q" "$dir" "${files[@]}")
      local i=0 pairs=()
      for f in "${base[@]}"; do
        pairs+=("$(made "$tool" "$OUT/ref-$tool" png "$i" "$f") $(made "$tool" "$dir" "$format" "$i" "$f")")
        i=$((i + 1))
      done
      read -r bytes score < <(printf '%s\n' "${pairs[@]}" | python3 "$OUT/score.py" "$THREADS")
      echo "$format $size $set ${#base[@]} $tool $q $rate $bytes $score" | tee -a "$ROWS" >&2
    done
  done
}

echo "equal quality: $ROUNDS rounds, $THREADS threads, best of $RUNS (rows as measured on stderr)"
tools=(imagepipe)
[ "$HAVE_SHARP" = 1 ] && tools+=(sharp)
measure webp 1024 large "$WEBP_QUALITIES" "${tools[@]}" vips
measure avif 256 jpeg "$AVIF_QUALITIES" "${tools[@]}"

python3 - "$ROWS" <<'PY'
import sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    fmt, size, subset, n, tool, q, rate, size_b, score = line.split()
    rows[(fmt, size, subset, int(n))].append((tool, int(q), float(rate), int(size_b), float(score)))
DEFAULT_Q = {"webp": 80, "avif": 50}   # sharp's and libvips' defaults
for (fmt, size, subset, n), entries in rows.items():
    print(f"\n{fmt.upper()} fit inside {size} px, {n} files of {subset}/")
    print(f"  {'tool':<10} {'q':>3} {'images/s':>9} {'KiB':>8} {'SSIMULACRA2':>12}")
    for tool, q, rate, b, score in entries:
        print(f"  {tool:<10} {q:3d} {rate:9.1f} {b / 1024:8.1f} {score:12.2f}")
    ours = sorted((s, r, b, q) for t, q, r, b, s in entries if t == "imagepipe")
    for tool, q, rate, b, score in entries:
        if tool == "imagepipe" or q != DEFAULT_Q[fmt]:
            continue
        # imagepipe at the same score: linear between the two qualities around it.
        lo = max((o for o in ours if o[0] <= score), default=None)
        hi = min((o for o in ours if o[0] >= score), default=None)
        if lo is None or hi is None:
            print(f"  at {tool} q{q}'s score {score:.2f}: outside imagepipe's measured range")
            continue
        w = 0 if hi[0] == lo[0] else (score - lo[0]) / (hi[0] - lo[0])
        o_rate = lo[1] + w * (hi[1] - lo[1])
        o_bytes = lo[2] + w * (hi[2] - lo[2])
        o_q = lo[3] + w * (hi[3] - lo[3])
        print(f"  at {tool} q{q}'s score {score:.2f}: imagepipe q{o_q:.0f} {o_rate:.1f}/s "
              f"({o_rate / rate:.2f}x) {o_bytes / 1024:.1f} KiB ({o_bytes / b:.2f}x the bytes)")
PY
