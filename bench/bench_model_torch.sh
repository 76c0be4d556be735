#!/usr/bin/env bash
# The PyTorch half of bench/bench_model.cpp: writes the bench model with the reference's model
# generator and times one forward+backward step of the independent PyTorch implementation
# (tests/reference/qaft_torch_ref.py, f32) on it. bench_model runs it; it also runs by hand.
#
#   bench/bench_model_torch.sh make DIR KEY=JSON...
#       tests/reference/make_tiny_model.py --family deepseek_v3 --dtype f32 --seed 1 --set KEY=JSON...
#       into DIR (config.json + model.safetensors).
#   bench/bench_model_torch.sh time DIR BLAS REPEAT THREADS
#       qaft_torch_ref.py --dtype f32 --threads THREADS --repeat REPEAT on DIR/ids.json and
#       DIR/targets.json (written by the caller). Prints three lines on stdout:
#         blas: <the libblas/libopenblas files a torch process maps in this environment>
#         time: <the script's JSON: best_s over REPEAT runs of forward+backward, load excluded>
#         loss: <the mean loss it computed, to check that both engines ran the same step>
#       BLAS picks the BLAS library Debian's torch (BLAS_INFO=generic, libblas.so.3) loads:
#         default    whatever update-alternatives selects for libblas.so.3
#         reference  Debian's reference BLAS (libblas3: plain Fortran loops, one thread)
#         openblas   Debian's OpenBLAS (libopenblas0-pthread, OPENBLAS_NUM_THREADS=THREADS);
#                    exit 3 when it is not installed
#       reference/openblas only put that library's directory first on LD_LIBRARY_PATH for this
#       process; the system's alternative is not changed.
#
# Interpreter: Debian's /usr/bin/python3 (python3-torch 1.13), as tests/reference/README.md says.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ref="$here/../tests/reference"
PY=/usr/bin/python3
libdir=/usr/lib/x86_64-linux-gnu

cmd="${1:-}"
case "$cmd" in
  make)
    dir="$2"
    shift 2
    sets=()
    for kv in "$@"; do sets+=(--set "$kv"); done
    exec "$PY" "$ref/make_tiny_model.py" --family deepseek_v3 --dtype f32 --seed 1 --out "$dir" "${sets[@]}"
    ;;
  time)
    dir="$2" blas="$3" repeat="$4" threads="$5"
    case "$blas" in
      default) ;;
      reference)
        [ -e "$libdir/blas/libblas.so.3" ] || { echo "reference BLAS (libblas3) not installed" >&2; exit 3; }
        export LD_LIBRARY_PATH="$libdir/blas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        ;;
      openblas)
        [ -e "$libdir/openblas-pthread/libblas.so.3" ] || { echo "libopenblas0-pthread not installed" >&2; exit 3; }
        export LD_LIBRARY_PATH="$libdir/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        export OPENBLAS_NUM_THREADS="$threads"
        ;;
      *) echo "BLAS must be default, reference or openblas" >&2; exit 2 ;;
    esac
    # Which BLAS file a torch process loads under this environment (the same for the timed run).
    "$PY" - <<'EOF'
import torch
torch.ones(8, 8) @ torch.ones(8, 8)
libs = sorted({l.split()[-1] for l in open("/proc/self/maps") if "blas" in l.split()[-1]})
print("blas:", " ".join(libs) if libs else "none mapped")
EOF
    out="$(mktemp "$dir/torch_out.XXXXXX.safetensors")"
    err="$(mktemp "$dir/torch_err.XXXXXX")"
    status=0
    "$PY" "$ref/qaft_torch_ref.py" --model "$dir" --ids "$dir/ids.json" --targets "$dir/targets.json" \
      --out "$out" --dtype f32 --threads "$threads" --repeat "$repeat" 2>"$err" || status=$?
    if [ "$status" -ne 0 ]; then cat "$err" >&2; rm -f "$err" "$out"; exit "$status"; fi
    echo "time: $(grep '"best_s"' "$err" | tail -n 1)"
    echo "loss: $(cd "$ref" && "$PY" -c 'import sys, stio; print(float(stio.SafetensorsFile(sys.argv[1]).get("loss")))' "$out")"
    rm -f "$err" "$out"
    ;;
  *)
    echo "usage: $0 make DIR KEY=JSON... | time DIR default|reference|openblas REPEAT THREADS" >&2
    exit 2
    ;;
esac
