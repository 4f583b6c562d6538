#!/usr/bin/env bash
# Checks the Dockerfile without a Docker engine (there is none here or in CI):
#  1. its build stage's RUN cargo command is the release build (--release --locked,
#     the sluice binary), and this script runs exactly that command in the repository,
#     as the image build would;
#  2. the final stage is a minimal base (distroless cc, or debian slim), copies only
#     that binary from the build stage, runs as uid 65532, exposes 8080 8443 10254
#     and has the binary as ENTRYPOINT;
#  3. the binary needs no shared library beyond what distroless/cc ships (glibc,
#     libgcc), and runs (--version).
# No image is built. Uses $CARGO_TARGET_DIR like the rest of the suite. A cold release
# build (lto = "thin") took 34 min wall here on 2 cores shared with other builds (16 min
# CPU); a warm one, seconds.
#
#   e2e/dockerfile_check.sh [--no-build] [DOCKERFILE]   # --no-build: steps 1-2 only
set -euo pipefail
build=1
if [[ ${1:-} == --no-build ]]; then
  build=0
  shift
fi
dockerfile=$(realpath "${1:-$(dirname "$0")/../Dockerfile}")
cd "$(dirname "$0")/.."

fail() { echo "dockerfile_check: $*" >&2; exit 1; }
ok() { echo "dockerfile_check: ok: $*"; }

# Instructions with line continuations joined, comments and blank lines dropped.
mapfile -t lines < <(sed -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' "$dockerfile" |
  awk '{ if (sub(/\\[[:space:]]*$/, "")) { buf = buf $0 " " } else { print buf $0; buf = "" } }')

stages=()      # stage index -> "name"
stage=-1
declare -A from run_cargo copy_from user expose entrypoint
for l in "${lines[@]}"; do
  instr=${l%% *}
  rest=${l#* }
  case ${instr^^} in
  FROM)
    stage=$((stage + 1))
    read -r image _as name <<<"$rest"
    stages[stage]=${name:-$stage}
    from[$stage]=$image
    ;;
  RUN)
    if [[ $rest == *"cargo "* ]]; then
      [[ -z ${run_cargo[$stage]:-} ]] || fail "stage ${stages[stage]} has two RUN cargo lines"
      run_cargo[$stage]=$rest
    fi
    ;;
  COPY) [[ $rest == --from=* ]] && copy_from[$stage]+="$rest;" ;;
  USER) user[$stage]=$rest ;;
  EXPOSE) expose[$stage]=$rest ;;
  ENTRYPOINT) entrypoint[$stage]=$rest ;;
  esac
done
((stage >= 1)) || fail "expected a multi-stage Dockerfile, found $((stage + 1)) stage(s)"
last=$stage

# 1. The build command.
build_stage=""
for ((i = 0; i < last; i++)); do
  [[ -n ${run_cargo[$i]:-} ]] && build_stage=$i
done
[[ -n $build_stage ]] || fail "no RUN cargo ... line in a build stage"
cmd=${run_cargo[$build_stage]}
read -ra argv <<<"$cmd"
[[ ${argv[0]} == cargo && ${argv[1]} == build ]] || fail "build command is not 'cargo build ...': $cmd"
for want in --release --locked; do
  [[ " $cmd " == *" $want "* ]] || fail "build command lacks $want: $cmd"
done
[[ " $cmd " == *" --bin sluice "* || " $cmd " == *" --bins "* ]] || fail "build command does not build the sluice binary: $cmd"
ok "build stage '${stages[build_stage]}' runs: $cmd"

# 2. The final stage.
case ${from[$last]} in
gcr.io/distroless/cc* | *debian:*-slim | *debian:*slim*) ok "final base ${from[$last]}" ;;
*) fail "final stage is not minimal (distroless/cc or debian slim): ${from[$last]}" ;;
esac
copies=${copy_from[$last]:-}
[[ $copies == *";"*";" ]] && fail "final stage copies more than one thing from another stage: $copies"
read -r from_flag src dst <<<"${copies%;}"
[[ $from_flag == "--from=${stages[build_stage]}" ]] || fail "final stage copies from '$from_flag', not the build stage '${stages[build_stage]}'"
[[ $src == */target/release/sluice ]] || fail "final stage copies $src, not target/release/sluice"
[[ ${user[$last]:-} =~ ^65532(:65532)?$ ]] || fail "final stage USER is '${user[$last]:-root}', not 65532"
for p in 8080 8443 10254; do
  [[ " ${expose[$last]:-} " == *" $p "* ]] || fail "EXPOSE lacks $p: ${expose[$last]:-}"
done
[[ ${entrypoint[$last]:-} == "[\"$dst\"]" ]] || fail "ENTRYPOINT ${entrypoint[$last]:-none} is not [\"$dst\"]"
ok "final stage: only $src -> $dst, USER ${user[$last]}, EXPOSE ${expose[$last]}, ENTRYPOINT ${entrypoint[$last]}"

# 3. Run the build command itself, then inspect what it built.
if ((!build)); then
  ok "not building (--no-build)"
  exit 0
fi
echo "dockerfile_check: running the Dockerfile's build command: $cmd"
"${argv[@]}"
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/sluice
[[ -x $bin ]] || fail "$cmd did not produce $bin"
# distroless/cc-debian12: glibc (libc, libm, libdl, libpthread, librt, ld-linux) and libgcc_s.
allowed=" libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 libgcc_s.so.1 ld-linux-x86-64.so.2 ld-linux-aarch64.so.1 "
needed=$(LC_ALL=C readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
for lib in $needed; do
  [[ $allowed == *" $lib "* ]] || fail "$bin needs $lib, which distroless/cc does not ship"
done
ok "shared libraries needed: $(echo $needed)"
"$bin" --version >/dev/null || fail "$bin --version failed"
ok "$("$bin" --version) built; no image was built (no Docker engine here)"
