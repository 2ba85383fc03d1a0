# Sourced by the benchmark scripts: installs fio and jq if missing, builds `quill` in release
# mode, sets $quill and creates $directory.
if ! command -v fio >/dev/null; then
  echo "installing fio" >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq fio >/dev/null
fi
command -v jq >/dev/null || { apt-get update -qq >/dev/null && apt-get install -y -qq jq >/dev/null; }
cargo build --release -j1 -p quill-cli >&2
quill=target/release/quill
mkdir -p "$directory"
