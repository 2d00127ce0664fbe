# Sourced by the benchmark scripts: their shared settings and timing helpers.
# Settings (each taken from the environment when set): CORPUS (IMAGEPIPE_CORPUS, default
# ../shared/corpus), RUNS (how often a timed command runs, default 3), THREADS (default: every
# core), TARGET (CARGO_TARGET_DIR, default target).
CORPUS=${IMAGEPIPE_CORPUS:-../shared/corpus}
RUNS=${RUNS:-3}
THREADS=${THREADS:-$(nproc)}
TARGET=${CARGO_TARGET_DIR:-target}

now() { date +%s.%N; }

# best_rate COUNT CMD... : runs CMD $RUNS times, prints the best images/s
best_rate() {
  local count=$1; shift
  local best=0
  for _ in $(seq "$RUNS"); do
    local t0 t1
    t0=$(now); "$@" >/dev/null 2>&1; t1=$(now)
    best=$(python3 -c "print(max($best, $count / ($t1 - $t0)))")
  done
  echo "$best"
}

# find_sharp : sets SHARP (the npm prefix, $SHARP_PREFIX or $TARGET/sharp) and HAVE_SHARP=1 when
# sharp is installed there, installing sharp 0.34 from npm first when node is here.
find_sharp() {
  SHARP=${SHARP_PREFIX:-$TARGET/sharp}
  if command -v npm >/dev/null && [ ! -d "$SHARP/node_modules/sharp" ]; then
    npm install --silent --prefix "$SHARP" sharp@0.34 >/dev/null 2>&1 || true
  fi
  HAVE_SHARP=0
  [ -d "$SHARP/node_modules/sharp" ] && HAVE_SHARP=1
  return 0
}

# release_worker : builds the release `worker`, sets WORKER to it and OUT to a scratch directory
# removed on exit.
release_worker() {
  cargo build --release -q -p workers
  WORKER="$TARGET/release/worker"
  OUT=$(mktemp -d)
  trap 'rm -rf "$OUT"' EXIT
}

# sharp_jpeg_js : writes $OUT/sharp.js, sharp's 256 px JPEG q80 thumbnails
# (node $OUT/sharp.js OUTDIR CONCURRENCY FILES...: CONCURRENCY images at once, OUTDIR/<i>.jpg).
sharp_jpeg_js() {
  cat > "$OUT/sharp.js" <<'JS'
// node sharp.js OUTDIR CONCURRENCY FILES... : 256 px JPEG q80 thumbnails, CONCURRENCY at once
const sharp = require('sharp');
const [out, conc, ...files] = process.argv.slice(2);
sharp.concurrency(1);
let next = 0;
async function worker() {
  while (next < files.length) {
    const n = next++;
    await sharp(files[n]).resize(256, 256, { fit: 'inside' }).jpeg({ quality: 80 }).toFile(`${out}/${n}.jpg`);
  }
}
Promise.all(Array.from({ length: Number(conc) }, worker)).catch((e) => { console.error(e); process.exit(1); });
JS
}
