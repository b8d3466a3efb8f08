#!/usr/bin/env bash
# Builds the addon and perf-hub the way users get them: linked against glibc 2.17 (CentOS 7,
# Amazon Linux 2) with napi-rs's cross toolchain (gcc 4.8.5 + a glibc 2.17 sysroot, from the npm
# package @napi-rs/cross-toolchain-x64-target-x86_64, unpacked once into .cache/napi-cross/).
#
#   scripts/build.sh --release   # `npm run build`: release addon at the root, hub at target/release/perf-hub
#   scripts/build.sh --debug     # `npm run build:debug`: debug addon at the root (also glibc 2.17),
#                                # cross-built debug hub at target/glibc2.17/x86_64-unknown-linux-gnu/debug/perf-hub,
#                                # native debug hub at target/debug/perf-hub (the tests' and cargo test's)
#
# Outputs at the root: perf-agent.linux-x64-gnu.node, binding.js, binding.d.ts (moved into place
# with rename(2), so a running process keeps its mapped copy). Cross builds have their own target
# dir, target/glibc2.17/, so they don't fight with native builds (`cargo build`/`cargo test` in
# target/debug, a plain `napi build` in target/x86_64-unknown-linux-gnu/): a different linker and
# C compiler would rebuild everything back and forth. Linking goes through rust-lld (as rustc does natively),
# which keeps incremental debug builds as fast as native ones; the glibc floor comes from the
# sysroot, not from the linker. On a host other than Linux x86_64 it falls back to a native build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PROFILE=debug
case "${1:---debug}" in
  --release) PROFILE=release ;;
  --debug) PROFILE=debug ;;
  *) echo "usage: scripts/build.sh [--debug|--release]" >&2; exit 2 ;;
esac

TRIPLE=x86_64-unknown-linux-gnu
BINARY=perf-agent.linux-x64-gnu.node
NAPI=(node "$ROOT/node_modules/@napi-rs/cli/dist/cli.js")
[ -f "${NAPI[1]}" ] || { echo "build.sh: @napi-rs/cli missing: run npm ci first" >&2; exit 1; }
napi_release=()
[ "$PROFILE" = release ] && napi_release=(--release)

log() { echo "build.sh: $*" >&2; }

# Moves a file into place atomically (same filesystem: stage under target/).
install_file() { # src dest
  local tmp="$2.tmp.$$"
  cp -f "$1" "$tmp" && mv -f "$tmp" "$2"
}

if [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then
  log "host $(uname -s)-$(uname -m): native build (the glibc 2.17 build needs a Linux x86_64 host)"
  "${NAPI[@]}" build --platform "${napi_release[@]}" --js binding.js --dts binding.d.ts
  cargo build "${napi_release[@]}" -p perf-hub
  exit 0
fi

# --- toolchain (idempotent; fast when ready) -------------------------------------------------
# The registry has only 1.0.0 of the x86_64 target package (@napi-rs/cli's own
# @napi-rs/cross-toolchain 1.0.5 asks for 1.0.5, so `napi build --use-napi-cross` can't fetch it):
# fetch the pinned tarball with npm, check its integrity, unpack it ourselves.
TC_PKG=@napi-rs/cross-toolchain-x64-target-x86_64
TC_VERSION=1.0.0
TC_INTEGRITY=sha512-lecoghCfoTAX9MLFcIx9/nL9M8xdkZ9n8Pki8qjKUNzjiq1zbECdEbzIZAMMHRtrXxifK9dAyYuh8gSxNbr2og==
# Only where `xz` is missing (minimal Debian images): @napi-rs/lzma's binding decompresses.
LZMA_PKG=@napi-rs/lzma-linux-x64-gnu
LZMA_VERSION=1.5.3
LZMA_INTEGRITY=sha512-cqF0sRTngwVgnH0y7OV/5zWKWZomMYY71t3gzjtmJou4oPoWQHjxmO1Jo5E3GqUg2bPk+Fp3DcRw1xLAeKs1cg==

CACHE=$ROOT/.cache/napi-cross
TC=$CACHE/$TC_VERSION/$TRIPLE
STAMP=$TC/.perf-agent-ready

# npm pack <spec> into $2, verify the tarball's sha512 against $3; prints the tarball path.
fetch_pinned() { # spec dest integrity
  local spec=$1 dest=$2 want=$3 name got
  name=$(cd "$dest" && npm pack "$spec" --ignore-scripts --json --pack-destination . |
    node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0,"utf8"))[0].filename)')
  got=$(node -e 'const c=require("crypto"),f=require("fs");process.stdout.write("sha512-"+c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$dest/$name")
  if [ "$got" != "$want" ]; then
    echo "build.sh: $spec: integrity $got, expected $want" >&2
    return 1
  fi
  echo "$dest/$name"
}

prepare_toolchain() {
  [ "$(cat "$STAMP" 2>/dev/null)" = "$TC_INTEGRITY" ] && return 0
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock 9 # another build may be unpacking it right now
  if [ "$(cat "$STAMP" 2>/dev/null)" = "$TC_INTEGRITY" ]; then exec 9>&-; return 0; fi
  log "fetching $TC_PKG@$TC_VERSION (48 MB, once) into ${TC#"$ROOT"/}"
  local work tgz
  rm -rf "$CACHE"/tmp.* # what an interrupted unpack left (we hold the lock)
  work=$(mktemp -d "$CACHE/tmp.XXXXXX")
  tgz=$(fetch_pinned "$TC_PKG@$TC_VERSION" "$work" "$TC_INTEGRITY")
  tar --no-same-owner -xzf "$tgz" -C "$work" package/$TRIPLE.tar.xz
  mkdir -p "$work/toolchain"
  if command -v xz >/dev/null 2>&1 && [ -z "${BUILD_SH_NO_XZ:-}" ]; then
    xz -dc "$work/package/$TRIPLE.tar.xz" | tar --no-same-owner -x -C "$work/toolchain"
  else
    local lzma
    lzma=$(fetch_pinned "$LZMA_PKG@$LZMA_VERSION" "$work" "$LZMA_INTEGRITY")
    tar --no-same-owner -xzf "$lzma" -C "$work" package/lzma.linux-x64-gnu.node
    node -e 'const f=require("fs");const {xz}=require(process.argv[1]);f.writeFileSync(process.argv[3],xz.decompressSync(f.readFileSync(process.argv[2])))' \
      "$work/package/lzma.linux-x64-gnu.node" "$work/package/$TRIPLE.tar.xz" "$work/toolchain.tar"
    tar --no-same-owner -xf "$work/toolchain.tar" -C "$work/toolchain"
  fi
  [ -x "$work/toolchain/bin/$TRIPLE-gcc" ] || { log "unpacked toolchain has no bin/$TRIPLE-gcc"; exit 1; }
  rm -rf "$TC"
  mkdir -p "$(dirname "$TC")"
  mv "$work/toolchain" "$TC"
  rm -rf "$work"
  echo "$TC_INTEGRITY" > "$STAMP"
  exec 9>&-
}

# gcc 4.8.5 can't `-fuse-ld=lld`; `-B dir` with an `ld` that is rust-lld does the same.
prepare_linker() {
  local lld wrapper=$CACHE/bin/$TRIPLE-cc want
  local rustc=${RUSTC:-rustc}
  lld="$("$rustc" --print sysroot)/lib/rustlib/$("$rustc" -vV | sed -n 's/^host: //p')/bin/rust-lld"
  mkdir -p "$CACHE/bin" "$CACHE/lld"
  if [ -x "$lld" ]; then
    [ "$(readlink "$CACHE/lld/ld" 2>/dev/null)" = "$lld" ] || ln -sfn "$lld" "$CACHE/lld/ld"
    want="#!/bin/sh
exec \"$TC/bin/$TRIPLE-gcc\" -B\"$CACHE/lld/\" \"\$@\""
  else
    log "no rust-lld in the Rust toolchain: linking with the toolchain's GNU ld (slower)"
    want="#!/bin/sh
exec \"$TC/bin/$TRIPLE-gcc\" \"\$@\""
  fi
  if [ "$(cat "$wrapper" 2>/dev/null)" != "$want" ]; then
    printf '%s\n' "$want" > "$wrapper.tmp.$$" && chmod +x "$wrapper.tmp.$$" && mv -f "$wrapper.tmp.$$" "$wrapper"
  fi
  LINKER=$wrapper
}

prepare_toolchain
prepare_linker

# Environment of the cross builds only (the native debug hub below must not see it, or it would
# be rebuilt back and forth with `cargo test`).
CROSS_ENV=(
  "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=$LINKER"
  "CC_x86_64_unknown_linux_gnu=$TC/bin/$TRIPLE-gcc"
  "CXX_x86_64_unknown_linux_gnu=$TC/bin/$TRIPLE-g++"
  "AR_x86_64_unknown_linux_gnu=$TC/bin/$TRIPLE-ar"
  "RANLIB_x86_64_unknown_linux_gnu=$TC/bin/$TRIPLE-ranlib"
)
CARGO_TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CROSS_TARGET=$CARGO_TARGET/glibc2.17
CROSS_ENV+=("CARGO_TARGET_DIR=$CROSS_TARGET")

# --- addon ----------------------------------------------------------------------------------
mkdir -p "$CROSS_TARGET/napi-out"
STAGE=$(mktemp -d "$CROSS_TARGET/napi-out/$PROFILE.XXXXXX") # per run: builds may run concurrently
trap 'rm -rf "$STAGE"' EXIT
env "${CROSS_ENV[@]}" "${NAPI[@]}" build --platform --target "$TRIPLE" "${napi_release[@]}" \
  --output-dir "$STAGE" --js binding.js --dts binding.d.ts
for f in "$BINARY" binding.js binding.d.ts; do
  mv -f "$STAGE/$f" "$ROOT/$f"
done
rm -rf "$STAGE"

# --- hub ------------------------------------------------------------------------------------
env "${CROSS_ENV[@]}" cargo build "${napi_release[@]}" -p perf-hub --target "$TRIPLE"
if [ "$PROFILE" = release ]; then
  mkdir -p "$CARGO_TARGET/release"
  install_file "$CROSS_TARGET/$TRIPLE/release/perf-hub" "$CARGO_TARGET/release/perf-hub"
else
  cargo build -p perf-hub
fi
