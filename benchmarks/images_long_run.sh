#!/usr/bin/env bash
# Quality against wall-clock time (docs/images.md, issue 17): trains ddpm-images in SEGMENTS
# segments of MINUTES wall-clock minutes each (--resume, so the run is one run), evaluates each
# segment's checkpoint between segments (so that the evaluations take no training time), and draws
# the bits/dim and the classifier-feature Frechet distance against training time. Stop other work
# on the machine first: the x axis is this machine's wall clock.
#
#   benchmarks/images_long_run.sh --images build/test/examples/images/ddpm-images \
#     --classifier out/classifier/classifier.ckpt --out out/long -- --loss hybrid --variance learned-range
#
# Options (defaults in brackets): --minutes [15] --segments [8] --threads [2] --bound-stride [10]
# (the blocked bound, within 0.004 bits/dim of the exact one on UNetSmall) --bound-n [64] --fid-n
# [1000]; everything after -- goes to `ddpm-images train`. Writes OUT/run (the training),
# OUT/segment_K.ckpt, OUT/eval_K/metrics.json, OUT/curve.png and OUT/curve.md (the table).
set -euo pipefail
images="" classifier="" out="" minutes=15 segments=8 threads=2 stride=10 bound_n=64 fid_n=1000
while (($#)); do
  case $1 in
    --images) images=$2; shift 2 ;;
    --classifier) classifier=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --minutes) minutes=$2; shift 2 ;;
    --segments) segments=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --bound-stride) stride=$2; shift 2 ;;
    --bound-n) bound_n=$2; shift 2 ;;
    --fid-n) fid_n=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "images_long_run.sh: unknown option '$1' (see the comment at the top)" >&2; exit 2 ;;
  esac
done
for required in images classifier out; do
  [[ -n ${!required} ]] || { echo "images_long_run.sh: --$required is required" >&2; exit 2; }
done
[[ -x $images ]] || { echo "images_long_run.sh: --images '$images' is not an executable" >&2; exit 2; }
[[ -f $classifier ]] || { echo "images_long_run.sh: --classifier '$classifier' is not a file" >&2; exit 2; }
mkdir -p "$out"
metrics=() steps=()
for ((k = 1; k <= segments; ++k)); do
  if [[ ! -f $out/segment_$k.ckpt ]]; then  # a rerun after an interruption goes on from here
    resume=()
    ((k > 1)) && resume=(--resume "$out/segment_$((k - 1)).ckpt")
    # --steps is only a cap: the segment ends after MINUTES of training, with a checkpoint.
    "$images" train "$@" --steps 100000000 --minutes "$minutes" --preview 0 --checkpoint-every 0 \
      --threads "$threads" --out "$out/run" "${resume[@]}"
    cp "$out/run/model.ckpt" "$out/segment_$k.ckpt"
  fi
  if [[ ! -f $out/eval_$k/metrics.json ]]; then
    "$images" eval --checkpoint "$out/segment_$k.ckpt" --classifier "$classifier" \
      --bound-n "$bound_n" --bound-stride "$stride" --ode-n 0 --fid-n "$fid_n" --seed 0 \
      --threads "$threads" --out "$out/eval_$k"
  fi
  steps+=("$("$images" info "$out/segment_$k.ckpt" | awk '/^step:/ {print $2}')")
  metrics+=("$out/eval_$k/metrics.json")
done
{
  "$images" curve "${metrics[@]}" --every "$minutes" --unit minutes --out "$out/curve.png"
  echo
  echo "Optimizer steps at the end of each segment: ${steps[*]}"
} | tee "$out/curve.md"
