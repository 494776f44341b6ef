#!/usr/bin/env bash
# The resolution sweep (the paper's Figure 4) and Table 5 (single scale, best single scale,
# multi-scale testing), with `dcn-eval sweep`:
#
#   scripts/resolution_sweep.sh --configs A,B --checkpoints K1,K2 [--labels a,b] [--sizes 400,...,1400]
#                               [--multi-scale 480,...] [--flip] [--set key=value]... [--threads N] [--out PREFIX]
#   scripts/ablation.sh table5 [--data synth|coco] [--checkpoints K_regular,K_dcnv2] [--threads N] [--set key=value]...
#
# The sweep evaluates each checkpoint on its config's val split at every shorter side (the longest
# side keeps the config's test aspect, 1333/800 for the paper's configs) and writes PREFIX.md (the
# table: AP per size and model, the best single scale, time per image and peak memory per size),
# PREFIX.svg (AP against the shorter side, one line per model) and every evaluation's detections
# and metrics in PREFIX/<label>/. PREFIX defaults to results/resolution_sweep; sizes to
# 400,600,800,1000,1200,1400.
# table5 runs the Faster R-CNN R-101 rows regular and DCNv2 (configs/<data>/faster_rcnn_r101_{regular,dcnv2}.yaml):
# it trains them into results/<data>/table5/<row>/ unless --checkpoints gives them, then sweeps
# the paper's sizes with multi-scale testing at 480,576,688,864,1200,1400 plus flip (on the small
# synthetic images every size is scaled by 256/800) into results/table5_<data>.{md,svg}.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
case $1 in -h|--help) usage ;; esac
make -s build >/dev/null
bin=.build/release

if [ "$1" != table5 ]; then
    args=("$@")
    [[ " $* " == *" --sizes "* ]] || args+=(--sizes 400,600,800,1000,1200,1400)
    exec $bin/dcn-eval sweep "${args[@]}"
fi

shift
data=synth; checkpoints=""; threads=(); extra=()
while [ $# -gt 0 ]; do
    case $1 in
        --data) data=${2:?--data needs synth or coco}; shift 2 ;;
        --checkpoints) checkpoints=${2:?--checkpoints needs K_regular,K_dcnv2}; shift 2 ;;
        --threads) threads=(--threads "${2:?--threads needs a number}"); shift 2 ;;
        --set) extra+=(--set "${2:?--set needs key=value}"); shift 2 ;;
        -h|--help) usage ;;
        *) echo "resolution_sweep.sh table5: unknown argument '$1'" >&2; usage ;;
    esac
done
case $data in
    synth) sizes=128,192,256,320,384,448; multi=154,184,220,276,384,448
           [ -f data/synth/annotations/instances_train.json ] || $bin/dcn-data synth --out data/synth ;;
    coco) sizes=400,600,800,1000,1200,1400; multi=480,576,688,864,1200,1400 ;;
    *) echo "resolution_sweep.sh table5: --data must be synth or coco, got '$data'" >&2; exit 2 ;;
esac
configs=configs/$data/faster_rcnn_r101_regular.yaml,configs/$data/faster_rcnn_r101_dcnv2.yaml
if [ -z "$checkpoints" ]; then
    for row in regular dcnv2; do
        out=results/$data/table5/$row
        if [ -f "$out/model_final.safetensors" ]; then echo "== $out: trained before"
        elif [ -e "$out/latest" ]; then
            $bin/dcn-train --config configs/$data/faster_rcnn_r101_$row.yaml "${extra[@]}" --set "output.dir=$out" --resume "$out/latest" "${threads[@]}"
        else
            $bin/dcn-train --config configs/$data/faster_rcnn_r101_$row.yaml "${extra[@]}" --set "output.dir=$out" --force "${threads[@]}"
        fi
    done
    checkpoints=results/$data/table5/regular/model_final.safetensors,results/$data/table5/dcnv2/model_final.safetensors
fi
exec $bin/dcn-eval sweep --configs "$configs" --checkpoints "$checkpoints" --labels regular,DCNv2 --sizes "$sizes" \
    --multi-scale "$multi" --flip --out "results/table5_$data" "${extra[@]}" "${threads[@]}"
