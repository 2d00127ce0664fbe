#!/usr/bin/env bash
# Video benchmarks, all in one run on this machine's cores (release build), each figure the
# median of RUNS runs:
#   1. imagepipe's video path (`worker transform --threads <cores>`, the engine with its ffmpeg
#      decoders) against two ffmpeg scripts on the same files: one `ffmpeg -ss T -i F
#      -frames:v 1 -vf scale=320:-2` call per frame (run <cores> at a time), and one ffmpeg call
#      with an `fps=` filter writing JPEGs — for the poster, {"count": 10} and {"every": 1},
#      320 px JPEG (and WebP for imagepipe). JPEG bytes per frame and SSIM against ffmpeg's
#      lossless PNG of the same frame come with the times.
#   2. {"count": 10} of a 10-minute 720p video (made here: testsrc, a keyframe every 2 s)
#      against {"count": 10} of the 12 s slideshow: seeking, not decoding ten minutes.
#   3. peak RSS of the worker and of its decoders on the 1080p HEVC file.
#
#   4. with ALTERNATE=1 instead: count10 and every1 with decoders primed while the probe runs
#      (the default) and not (the same file under a directory whose name has a `+`, which the
#      filter graph will not quote, so every pass starts its own decoder), and the fps script,
#      one of each per round, medians of RUNS rounds — the machine's drift falls on all three.
#
#   scripts/bench-video.sh            # RUNS=5
#   ALTERNATE=1 RUNS=9 scripts/bench-video.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${IMAGEPIPE_CORPUS:-../shared/corpus}
RUNS=${RUNS:-5}
TARGET=${CARGO_TARGET_DIR:-target}
CORES=$(nproc)

cargo build --release -q -p workers
WORKER="$TARGET/release/worker"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LONG="${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imagepipe-bench}/testsrc-10min-720p.mp4"
if [ ! -s "$LONG" ]; then
  mkdir -p "$(dirname "$LONG")"
  ffmpeg -v error -f lavfi -i testsrc=size=1280x720:rate=30:duration=600 -c:v libx264 \
    -preset ultrafast -g 60 -pix_fmt yuv420p -y "$LONG.tmp.mp4"
  mv "$LONG.tmp.mp4" "$LONG"
fi

duration() { ffprobe -v error -show_entries format=duration -of csv=p=0 "$1"; }
# Median wall time in seconds of running "$@" RUNS times (output directories are emptied).
median() {
  local times=()
  for _ in $(seq "$RUNS"); do
    rm -rf "$WORK/out" && mkdir -p "$WORK/out"
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    times+=("$(echo "$end - $start" | bc -l)")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]}'
}

# The frame times each choice means, as imagepipe reads them (API.md): count N spreads N frames
# evenly (the middle of N equal spans), every S starts at 0.
times_for() { # choice duration
  case $1 in
    poster) echo 0 ;;
    count10) python3 -c "d=$2; print(' '.join(f'{(i+0.5)*d/10:.3f}' for i in range(10)))" ;;
    every1) python3 -c "import math; d=$2; print(' '.join(str(i) for i in range(math.ceil(d))))" ;;
  esac
}
spec_for() { # choice format
  local frames
  case $1 in
    poster) frames='"poster"' ;;
    count10) frames='{"count":10}' ;;
    every1) frames='{"every":1}' ;;
  esac
  echo "{\"video\":{\"frames\":$frames},\"outputs\":[{\"name\":\"f\",\"ops\":[{\"op\":\"resize\",\"width\":320}],\"format\":\"$2\",\"quality\":85}]}"
}

imagepipe() { # choice format file
  "$WORKER" transform --threads "$CORES" --spec "$(spec_for "$1" "$2")" --out "$WORK/out" "$3"
}
per_frame_script() { # file times...
  local file=$1; shift
  printf '%s\n' "$@" | xargs -P "$CORES" -I{} \
    ffmpeg -v error -ss {} -i "$file" -frames:v 1 -vf scale=320:-2 -q:v 3 -y "$WORK/out/{}.jpg"
}
fps_script() { # file rate
  ffmpeg -v error -i "$1" -vf "fps=$2,scale=320:-2" -q:v 3 -y "$WORK/out/%03d.jpg"
}

# Mean JPEG bytes and SSIM of the JPEGs in $WORK/out against ffmpeg's PNG at the same times.
quality() { # file times...
  local file=$1; shift
  local refs="$WORK/refs"; rm -rf "$refs"; mkdir -p "$refs"
  local i=0
  for t in "$@"; do
    ffmpeg -v error -ss "$t" -i "$file" -frames:v 1 -vf scale=320:-2 -y "$refs/$i.png"
    i=$((i + 1))
  done
  mapfile -t outs < <(find "$WORK/out" -name '*.jpg' | sort -V)
  local total=0 ssim_sum=0 n=0
  for out in "${outs[@]}"; do
    [ -s "$refs/$n.png" ] || break
    total=$((total + $(stat -c %s "$out")))
    local s
    s=$(ffmpeg -v info -i "$out" -i "$refs/$n.png" -lavfi "[0:v][1:v]scale2ref[a][b];[a][b]ssim" \
      -f null - 2>&1 | sed -n 's/.*All:\([0-9.]*\).*/\1/p' | tail -1)
    ssim_sum=$(echo "$ssim_sum + ${s:-0}" | bc -l)
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || { echo "n/a"; return; }
  printf '%d B, SSIM %.4f' "$((total / n))" "$(echo "$ssim_sum / $n" | bc -l)"
}

# Seconds one run of "$@" takes.
seconds() {
  rm -rf "$WORK/out" && mkdir -p "$WORK/out"
  local start end
  start=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}
middle() { sort -g | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]}'; }

alternate() {
  mkdir -p "$WORK/unprimed+"
  echo "| file | frames | primed s | not primed s | fps script s | primed ÷ fps | not primed ÷ fps |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
  for name in slideshow-vp9-opus.webm slideshow-hevc10.mov slideshow-h264-aac.mp4; do
    local file="$CORPUS/video/$name" unprimed="$WORK/unprimed+/$name"
    cp "$file" "$unprimed"
    local d; d=$(duration "$file")
    for choice in count10 every1; do
      local times rate on=() off=() fps=()
      read -r -a times <<<"$(times_for "$choice" "$d")"
      rate=$(python3 -c "print(${#times[@]}/$d)")
      for _ in $(seq "$RUNS"); do
        on+=("$(seconds imagepipe "$choice" jpeg "$file")")
        off+=("$(seconds imagepipe "$choice" jpeg "$unprimed")")
        fps+=("$(seconds fps_script "$file" "$rate")")
      done
      local a b r
      a=$(printf '%s\n' "${on[@]}" | middle)
      b=$(printf '%s\n' "${off[@]}" | middle)
      r=$(printf '%s\n' "${fps[@]}" | middle)
      echo "| $name | $choice | $a | $b | $r | $(python3 -c "print(f'{$a/$r:.2f}')") | $(python3 -c "print(f'{$b/$r:.2f}')") |"
    done
  done
}

echo "# video benchmark, $(date -u +%F), $CORES cores, ffmpeg $(ffmpeg -version | head -1 | cut -d' ' -f3), RUNS=$RUNS"
if [ "${ALTERNATE:-0}" = 1 ]; then
  alternate
  exit 0
fi
echo
echo "| file | frames | imagepipe JPEG s | imagepipe WebP s | per-frame script s | fps script s | imagepipe ÷ better script | JPEG bytes/frame, SSIM: imagepipe · per-frame script |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for name in slideshow-h264-aac.mp4 slideshow-vp9-opus.webm slideshow-hevc10.mov; do
  file="$CORPUS/video/$name"
  d=$(duration "$file")
  for choice in poster count10 every1; do
    read -r -a times <<<"$(times_for "$choice" "$d")"
    ours=$(median imagepipe "$choice" jpeg "$file")
    # Scored at the times imagepipe took (the poster's is its own choice).
    rm -rf "$WORK/out" && mkdir -p "$WORK/out"
    read -r -a ours_times <<<"$(imagepipe "$choice" jpeg "$file" |
      python3 -c 'import json,sys; print(" ".join(str(o["t"]) for o in json.load(sys.stdin)["outputs"]))')"
    ours_quality=$(quality "$file" "${ours_times[@]}")
    webp=$(median imagepipe "$choice" webp "$file")
    frame_script=$(median per_frame_script "$file" "${times[@]}")
    script_quality=$(quality "$file" "${times[@]}")
    if [ "$choice" = poster ]; then
      fps="–"; best=$frame_script
    else
      rate=$(python3 -c "print(${#times[@]}/$d)")
      fps=$(median fps_script "$file" "$rate")
      best=$(python3 -c "print(min($frame_script, $fps))")
    fi
    ratio=$(python3 -c "print(f'{$ours/$best:.2f}')")
    echo "| $name | $choice (${#times[@]}) | $ours | $webp | $frame_script | $fps | $ratio | $ours_quality · $script_quality |"
  done
done

echo
long=$(median imagepipe count10 jpeg "$LONG")
short=$(median imagepipe count10 jpeg "$CORPUS/video/slideshow-h264-aac.mp4")
long_script=$(median fps_script "$LONG" "$(python3 -c "print(10/$(duration "$LONG"))")")
echo "count 10, 720p H.264: 10-minute testsrc $long s, 12 s slideshow $short s, ratio $(python3 -c "print(f'{$long/$short:.2f}')") (the fps script on the 10-minute file: $long_script s)"

echo
# Peak RSS: every process in the worker's tree, sampled every 10 ms (VmHWM is the peak so far).
python3 - "$WORKER" "$CORES" "$(spec_for count10 jpeg)" "$WORK/out" "$CORPUS/video/slideshow-hevc10.mov" <<'EOF'
import os, subprocess, sys, time
worker, cores, spec, out, video = sys.argv[1:]
child = subprocess.Popen([worker, "transform", "--threads", cores, "--spec", spec, "--out", out, video],
                         stdout=subprocess.DEVNULL)
peak = {"worker": 0, "decoder": 0}
def tree(pid):
    kids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(p))
    return kids + [g for k in kids for g in tree(k)]
def hwm(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0
while child.poll() is None:
    peak["worker"] = max(peak["worker"], hwm(child.pid))
    for pid in tree(child.pid):
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        if comm in ("ffmpeg", "ffprobe"):
            peak["decoder"] = max(peak["decoder"], hwm(pid))
    time.sleep(0.01)
print(f"peak RSS on slideshow-hevc10.mov (1920x1080 HEVC 10-bit), count 10, {cores} threads: "
      f"worker {peak['worker'] / 1024:.0f} MiB, largest decoder {peak['decoder'] / 1024:.0f} MiB")
EOF
