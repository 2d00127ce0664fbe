#!/usr/bin/env bash
# Animated thumbnails, measured in one run on the same files and cores: every animated GIF and
# WebP of the corpus (9 to 380 frames) to an animated WebP (quality 80) and GIF at most 256 px
# wide (never enlarged), by
# imagepipe `worker transform` (`"animated": true`), sharp (npm, `{animated: true}`, its own
# libvips 8.17) and vipsthumbnail (`[n=-1]`, Debian's libvips 8.14 with cgif). Prints
# animations/s (best of RUNS), the bytes they come to and a quality score: the PSNR (dB) of
# every source frame, at the time it shows (delays of 10 ms or less shown for 100 ms, as
# browsers do), against Pillow's Lanczos resize of that frame.
#
#   scripts/bench-animation.sh            # ROUNDS=2 RUNS=3 by default
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
ROUNDS=${ROUNDS:-2}

command -v vipsthumbnail >/dev/null || { echo "vipsthumbnail missing: apt-get install libvips-tools" >&2; exit 1; }
python3 -c 'import PIL' 2>/dev/null || { echo "Pillow missing: pip install pillow" >&2; exit 1; }
release_worker
find_sharp


cat > "$OUT/sharp.js" <<'JS'
// node sharp.js OUTDIR FORMAT CONCURRENCY FILES... : 256 px wide animations, CONCURRENCY at once
const sharp = require('sharp');
const [out, format, conc, ...files] = process.argv.slice(2);
sharp.concurrency(1);
let next = 0;
async function worker() {
  while (next < files.length) {
    const n = next++;
    const img = sharp(files[n], { animated: true }).resize({ width: 256, withoutEnlargement: true });
    await (format === 'webp' ? img.webp({ quality: 80 }) : img.gif()).toFile(`${out}/${n + 1}.${format}`);
  }
}
Promise.all(Array.from({ length: Number(conc) }, worker)).catch((e) => { console.error(e); process.exit(1); });
JS

cat > "$OUT/score.py" <<'PY'
# score.py SOURCE OUTPUT : bytes and mean PSNR (dB) over the source's frames at their start times
import math, os, sys
from PIL import Image, ImageChops, ImageStat

def timeline(path):
    im = Image.open(path)
    frames = []
    for n in range(getattr(im, "n_frames", 1)):
        im.seek(n)
        im.load()  # WebP frames give their duration once loaded
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        delay = im.info.get("duration", 0) or 0
        # As browsers show them: 10 ms or less is 100 ms.
        frames.append((Image.alpha_composite(white, rgba).convert("RGB"), delay if delay > 10 else 100))
    return frames

def at(frames, t):
    start = 0
    for image, delay in frames:
        if t < start + delay:
            return image
        start += delay
    return frames[-1][0]

src, out = timeline(sys.argv[1]), timeline(sys.argv[2])
size = out[0][0].size
total, t = 0.0, 0
for image, delay in src:
    ref = image.resize(size, Image.LANCZOS)
    rms = ImageStat.Stat(ImageChops.difference(ref, at(out, t))).rms
    mse = sum(r * r for r in rms) / 3
    total += 99.0 if mse == 0 else 10 * math.log10(255 * 255 / mse)
    t += delay
print(os.path.getsize(sys.argv[2]), total / len(src))
PY

mapfile -t base < <(for f in "$CORPUS"/formats/*.gif "$CORPUS"/formats/*.webp; do
  python3 -c 'import sys; from PIL import Image; sys.exit(0 if getattr(Image.open(sys.argv[1]), "n_frames", 1) > 1 else 1)' "$f" && echo "$f"
done)
files=()
for _ in $(seq "$ROUNDS"); do files+=("${base[@]}"); done
n=${#files[@]}

ours() { "$WORKER" transform --threads "$THREADS" --spec "$1" --out "$2" "${@:3}"; }
vips() {
  local format=$1; shift
  : > "$OUT/cmds"
  local i=0
  local save=$format
  [ "$format" = webp ] && save="webp[Q=80]"
  for f in "$@"; do i=$((i + 1)); echo "vipsthumbnail '$f[n=-1]' -s '256x>' -o $OUT/vips/$i.$save" >> "$OUT/cmds"; done
  xargs -a "$OUT/cmds" -P "$THREADS" -d '\n' -I CMD sh -c CMD
}
# score DIR ours|other : total bytes and mean PSNR over the base files. `worker transform`
# writes DIR/<stem>/a.<ext> (a repeated stem gets -2); the others DIR/<i>.<ext>, i from 1.
score() {
  local dir=$1 kind=$2 i=0 bytes=0 psnr=0 made dir_name
  dir_name=$(basename "$dir")
  declare -A seen=()
  for f in "${base[@]}"; do
    i=$((i + 1))
    if [ "$kind" = ours ]; then
      local stem; stem=$(basename "${f%.*}")
      seen[$stem]=$(( ${seen[$stem]:-0} + 1 ))
      [ "${seen[$stem]}" -gt 1 ] && stem="$stem-${seen[$stem]}"
      made=$(ls "$dir/$stem"/a.* | head -1)
    else
      made=$(ls "$dir/$i".* | head -1)
    fi
    read -r b p < <(python3 "$OUT/score.py" "$f" "$made")
    printf '%s %s %.2f\n' "$(basename "$f")" "$b" "$p" >> "$OUT/files-$kind-$dir_name"
    bytes=$((bytes + b))
    psnr=$(python3 -c "print($psnr + $p)")
  done
  python3 -c "print(f'{$bytes / 1024:6.0f} KiB {$psnr / $i:5.2f} dB')"
}

echo "animated 256 px thumbnails of ${#base[@]} animations x $ROUNDS, $THREADS threads, best of $RUNS"
for format in webp gif; do
  if [ "$format" = webp ]; then
    spec='{"outputs":[{"name":"a","ops":[{"op":"resize","width":256}],"format":"webp","quality":80,"animated":true}]}'
  else
    spec='{"outputs":[{"name":"a","ops":[{"op":"resize","width":256}],"format":"gif","animated":true}]}'
  fi
  rm -rf "$OUT/ours" "$OUT/vips" "$OUT/sharp"; mkdir -p "$OUT/ours" "$OUT/vips" "$OUT/sharp"
  o=$(best_rate "$n" ours "$spec" "$OUT/ours" "${files[@]}")
  v=$(best_rate "$n" vips "$format" "${files[@]}")
  line="$format: imagepipe $(printf %6.2f "$o")/s"
  line+="  vips $(printf %6.2f "$v")/s ($(python3 -c "print(f'{$o / $v:.2f}')")x)"
  if [ "$HAVE_SHARP" = 1 ]; then
    s=$(best_rate "$n" env NODE_PATH="$SHARP/node_modules" node "$OUT/sharp.js" "$OUT/sharp" "$format" "$THREADS" "${files[@]}")
    line+="  sharp $(printf %6.2f "$s")/s ($(python3 -c "print(f'{$o / $s:.2f}')")x)"
  fi
  echo "$line"
  # One more pass of ours on the base files alone, named by source, to score.
  rm -rf "$OUT/ours"; mkdir -p "$OUT/ours"; ours "$spec" "$OUT/ours" "${base[@]}" >/dev/null
  rm -f "$OUT"/files-*
  echo "  size and PSNR: imagepipe $(score "$OUT/ours" ours)   vips $(score "$OUT/vips" other)$([ "$HAVE_SHARP" = 1 ] && echo "   sharp $(score "$OUT/sharp" other)")"
  # Per file: bytes and PSNR of each tool's animation.
  cut -d' ' -f2- "$OUT/files-other-vips" > "$OUT/cols-vips"
  cols=("$OUT/files-ours-ours" "$OUT/cols-vips")
  if [ "$HAVE_SHARP" = 1 ]; then
    cut -d' ' -f2- "$OUT/files-other-sharp" > "$OUT/cols-sharp"
    cols+=("$OUT/cols-sharp")
  fi
  paste -d' ' "${cols[@]}" |
    awk '{ printf "    %-26s imagepipe %8d B %5.2f dB   vips %8d B %5.2f dB", $1, $2, $3, $4, $5;
           if (NF > 5) printf "   sharp %8d B %5.2f dB", $6, $7; printf "\n" }'
done
