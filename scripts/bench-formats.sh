#!/usr/bin/env bash
# Phone formats and colour management, measured in one run on the same files and cores:
#   HEIC/AVIF 256 px thumbnails: imagepipe `worker transform` against vipsthumbnail (libvips
#     8.14 + libheif 1.15), heif-thumbnailer (libheif's, which uses the embedded thumbnail) and
#     heif-convert (libheif's full decode, written as JPEG: the floor of a full decode)
#   JPEG XL: imagepipe (jxl-oxide) against vipsthumbnail (libjxl 0.7)
#   HEIC at 160 px, where imagepipe and libvips both decode the embedded thumbnail
#   colour management: imagepipe converting to sRGB (the default) against the same spec with
#     `keep_metadata` (no transform), on the Kodak JPEGs (no profile) and on the P3 photo
# Prints images/s (best of RUNS) and ratios.
#
#   scripts/bench-formats.sh            # ROUNDS=4 RUNS=3 by default
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
ROUNDS=${ROUNDS:-4}

for tool in vipsthumbnail heif-thumbnailer heif-convert; do
  command -v "$tool" >/dev/null || {
    echo "$tool missing: apt-get install libvips-tools heif-thumbnailer libheif-examples" >&2
    exit 1
  }
done
# sharp (npm, its own libvips 8.17 + libheif 1.20; AV1 only, no HEVC) for AVIF, when node is here:
# found (or installed) after the build.
release_worker
find_sharp
sharp_jpeg_js
SPEC='{"outputs":[{"name":"thumb","ops":[{"op":"resize","width":256,"height":256}],"format":"jpeg","quality":80}]}'
KEEP='{"keep_metadata":true,"outputs":[{"name":"thumb","ops":[{"op":"resize","width":256,"height":256}],"format":"jpeg","quality":80}]}'

repeat() { local -n list=$1; local all=(); for _ in $(seq "$ROUNDS"); do all+=("${list[@]}"); done; printf '%s\n' "${all[@]}"; }
ours() { "$WORKER" transform --threads "$THREADS" --spec "$1" --out "$OUT/ours" "${@:2}"; }
row() {
  python3 - "$@" <<'PY'
import sys
label, n, *pairs = sys.argv[1:]
vals = [(pairs[i], float(pairs[i + 1])) for i in range(0, len(pairs), 2)]
ours = vals[0][1]
cells = "  ".join(f"{name} {v:7.1f}/s ({ours / v:4.2f}x)" if i else f"{name} {v:7.1f}/s"
                  for i, (name, v) in enumerate(vals))
print(f"{label:<26} {int(n):4d}  {cells}")
PY
}
# cli N TEMPLATE FILES... : one process per file, $THREADS at a time; in TEMPLATE {} is the
# input and {o} a fresh output path (without extension)
cli() {
  local n=$1 template=$2 i=0 cmds="$OUT/cmds"; shift 2
  : > "$cmds"
  for f in "$@"; do
    i=$((i + 1))
    local c=${template//\{\}/$f}
    echo "${c//\{o\}/$OUT/x$i}" >> "$cmds"
  done
  best_rate "$n" xargs -a "$cmds" -P "$THREADS" -d "\\n" -I CMD sh -c CMD
}

echo "256 px JPEG thumbnails, $THREADS threads, best of $RUNS (ratios: imagepipe ÷ other)"
for set in heic avif jxl; do
  case $set in
    heic) base=("$CORPUS"/camera/*.heic) ;;
    avif) base=("$CORPUS"/camera/*.avif) ;;
    jxl) base=("$CORPUS"/camera/8bit-sRGB.jxl) ;;
  esac
  mapfile -t files < <(repeat base)
  n=${#files[@]}
  o=$(best_rate "$n" ours "$SPEC" "${files[@]}")
  v=$(cli "$n" 'vipsthumbnail -s 256x256 -o {o}.jpg[Q=80,strip] {}' "${files[@]}")
  if [ "$set" = jxl ]; then
    row "$set (jxl-oxide)" "$n" imagepipe "$o" vips "$v"
  else
    t=$(cli "$n" 'heif-thumbnailer -s 256 {} {o}.png' "${files[@]}")
    c=$(cli "$n" 'heif-convert -q 80 {} {o}.jpg' "${files[@]}")
    row "$set (libheif)" "$n" imagepipe "$o" vips "$v" heif-thumbnailer "$t" heif-convert "$c"
    if [ "$set" = avif ] && [ "$HAVE_SHARP" = 1 ]; then
      # sharp's prebuilt AV1 decoder refuses the 10-bit file: compared on the 8-bit one alone.
      eight=()
      for _ in $(seq $((ROUNDS * 2))); do eight+=("$CORPUS/camera/8bit-sRGB.avif"); done
      mkdir -p "$OUT/sharp"
      o=$(best_rate "${#eight[@]}" ours "$SPEC" "${eight[@]}")
      sh=$(best_rate "${#eight[@]}" env NODE_PATH="$SHARP/node_modules" node "$OUT/sharp.js" "$OUT/sharp" "$THREADS" "${eight[@]}")
      v=$(cli "${#eight[@]}" 'vipsthumbnail -s 256x256 -o {o}.jpg[Q=80,strip] {}' "${eight[@]}")
      row "avif 8-bit (sharp)" "${#eight[@]}" imagepipe "$o" sharp "$sh" vips "$v"
    fi
  fi
done

# At 160 px both imagepipe (thumbnail ≥ 2× the output) and libvips (thumbnail ≥ the output)
# decode the embedded HEIC thumbnails instead of the photo: the same decoder doing the same work.
base=("$CORPUS"/camera/*.heic)
mapfile -t files < <(repeat base)
n=${#files[@]}
small=${SPEC//256/160}
o=$(best_rate "$n" ours "$small" "${files[@]}")
v=$(cli "$n" 'vipsthumbnail -s 160x160 -o {o}.jpg[Q=80,strip] {}' "${files[@]}")
t=$(cli "$n" 'heif-thumbnailer -s 160 {} {o}.png' "${files[@]}")
row "heic 160 px (thumbnails)" "$n" imagepipe "$o" vips "$v" heif-thumbnailer "$t"

echo
echo "colour management: converted to sRGB ÷ left as is (keep_metadata); runs alternate, best of $((RUNS * 2))"
for set in kodak p3; do
  case $set in
    kodak) base=("$CORPUS"/jpeg/*.jpg) ; copies=$((ROUNDS * 8)) ;;
    p3) base=("$CORPUS"/large/nikon_d3s_iptc-mess.jpg) ; copies=$((ROUNDS * 8)) ;;
  esac
  files=()
  for _ in $(seq "$copies"); do files+=("${base[@]}"); done
  n=${#files[@]}
  kept=0 conv=0
  for _ in $(seq $((RUNS * 2))); do
    kept=$(python3 -c "print(max($kept, $(RUNS=1 best_rate "$n" ours "$KEEP" "${files[@]}")))")
    conv=$(python3 -c "print(max($conv, $(RUNS=1 best_rate "$n" ours "$SPEC" "${files[@]}")))")
  done
  row "$set" "$n" converted "$conv" kept "$kept"
done
