# Sourced by the end-to-end benchmarks: builds the release binaries into $BIN, makes a work
# directory $WORK, and kills every process whose pid is added to PIDS (and removes $WORK) on
# exit. `free_port` prints a free loopback port.
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p gateway -p workers
BIN="$TARGET/release"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
