#!/usr/bin/env bash
# Whole-machine thumbnail throughput, measured in one run on the same files:
#   imagepipe  `worker transform` (every core)
#   libvips    `vipsthumbnail` (Debian libvips-tools), one process per core
#   Pillow     JPEG draft mode + thumbnail, one process per core (when python3 has PIL)
#   sharp      the npm package (its own libvips build), one image per core at once (when node
#              is here; installed into $TARGET/sharp on first use)
# Task: fit inside 256x256, JPEG quality 80, metadata stripped. Prints images/s (best of RUNS)
# and ratios, then the peak RSS of `worker transform` on each large photo, then (QUALITY=1, the
# default) WebP and AVIF at equal quality: see scripts/bench-quality.sh.
#
#   scripts/bench-engine.sh            # ROUNDS=8 RUNS=3 by default
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
ROUNDS=${ROUNDS:-8}

command -v vipsthumbnail >/dev/null || { echo "vipsthumbnail missing: apt-get install libvips-tools" >&2; exit 1; }
release_worker
SPEC='{"outputs":[{"name":"thumb","ops":[{"op":"resize","width":256,"height":256}],"format":"jpeg","quality":80}]}'
HAVE_PIL=0
python3 -c 'import PIL' 2>/dev/null && HAVE_PIL=1
find_sharp
sharp_jpeg_js

cat > "$OUT/pillow.py" <<'PY'
import os, sys
from multiprocessing import Pool
from PIL import Image
out = sys.argv[1]
def thumb(job):
    i, path = job
    im = Image.open(path)
    im.draft("RGB", (256, 256))          # libjpeg DCT scaling, as Pillow's thumbnail() does
    im = im.convert("RGB")
    im.thumbnail((256, 256), Image.LANCZOS)
    im.save(os.path.join(out, f"{i}.jpg"), "JPEG", quality=80)
if __name__ == "__main__":
    files = sys.argv[3:]
    with Pool(int(sys.argv[2])) as pool:
        pool.map(thumb, enumerate(files), chunksize=4)
PY


printf '%-8s %6s %12s %12s %12s %12s %10s %10s %10s\n' set images imagepipe vips pillow sharp "vs vips" "vs pillow" "vs sharp"
for set in jpeg large; do
  mapfile -t base < <(ls "$CORPUS/$set"/*.jpg)
  files=()
  for _ in $(seq "$ROUNDS"); do files+=("${base[@]}"); done
  n=${#files[@]}
  chunk=$(( (n + THREADS - 1) / THREADS ))
  ours=$(best_rate "$n" "$WORKER" transform --threads "$THREADS" --spec "$SPEC" --out "$OUT/ours" "${files[@]}")
  vips=$(best_rate "$n" bash -c "printf '%s\n' \"\$@\" | xargs -P $THREADS -n $chunk vipsthumbnail -s 256x256 -o '$OUT/%s.jpg[Q=80,strip]'" _ "${files[@]}")
  if [ "$HAVE_PIL" = 1 ]; then
    mkdir -p "$OUT/pil"
    pil=$(best_rate "$n" python3 "$OUT/pillow.py" "$OUT/pil" "$THREADS" "${files[@]}")
  else
    pil=0
  fi
  sharp=0
  if [ "$HAVE_SHARP" = 1 ]; then
    mkdir -p "$OUT/sharp"
    sharp=$(best_rate "$n" env NODE_PATH="$SHARP/node_modules" node "$OUT/sharp.js" "$OUT/sharp" "$THREADS" "${files[@]}")
  fi
  python3 - "$set" "$n" "$ours" "$vips" "$pil" "$sharp" <<'PY'
import sys
s, n, ours, vips, pil, sharp = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:])
fmt = lambda v: f"{v:10.1f}/s" if v else "       n/a"
ratio = lambda a, b: f"{a / b:9.2f}x" if b else "       n/a"
print(f"{s:<8} {n:6d} {fmt(ours)} {fmt(vips)} {fmt(pil)} {fmt(sharp)} {ratio(ours, vips)} {ratio(ours, pil)} {ratio(ours, sharp)}")
PY
done

echo
echo "peak RSS of worker transform, one large photo at a time:"
for f in "$CORPUS"/large/*.jpg; do
  /usr/bin/time -f "  %M KB  $(basename "$f")" "$WORKER" transform --spec "$SPEC" --out "$OUT/rss" "$f" >/dev/null
done 2>&1

if [ "${QUALITY:-1}" = 1 ]; then
  echo
  scripts/bench-quality.sh
fi
