#!/usr/bin/env bash
# The paper's Tables 6 and 7 (called by scripts/ablation.sh table6|table7, or directly):
#
#   scripts/ablation.sh table6 [--data synth|imagenet] [--arch resnet50|resnet101|resnext101_32x4d]
#                       [--seeds 0,1,2] [--threads N] [--set key=value]... [--out DIR]
#   scripts/ablation.sh table7 [--seeds 0,1,2] [--threads N] [--set key=value]... [--detector-set key=value]...
#                       [--segmenter-set key=value]... [--tasks det,seg,vid] [--out DIR]   (synthetic data)
#
# table6 trains the classifier rows regular / DCNv1 (dconv in res5) / DCNv2 (mdconv in res3-res5):
# configs/synth_cls/<method>.yaml on `dcn-data synth-cls` data (data/synth-cls, generated on first
# use; its val split is geometrically shifted), or configs/imagenet/<arch>_<method>.yaml (set
# data.root to the ImageFolder tree). Results: results/<data>/table6/<method>/ (seed s > 0 in
# .../seed<s>/<method>/) and the table results/table6_<data>.md: top-1, top-5 (mean over the
# seeds, lowest-highest in brackets), params, FLOPs.
# table7 fine-tunes the synthetic Faster R-CNN (configs/synth, roialign and mdconv@c3~c5 + mdpool)
# from scratch, from the regular classifier, and from the DCNv2 classifier with its offset and
# modulation branches re-initialised ("none") or kept ("ImageNet", here the synthetic
# pretraining); it trains the Table 6 rows it needs first. Table: results/table7_synth.md (AP, AP50).
# table7's segmentation column fine-tunes DeepLab (configs/synth_seg) on the easy synthetic label
# maps (data/synth-easy, `dcn-data synth --difficulty easy --semantic`) from the same classifiers:
# regular from the regular one, DCNv2 from the regular one (offsets zero) and from the DCNv2 one with
# its offsets; table results/table7_synth_seg.md (mIoU). The VID column trains the per-frame
# detector (configs/synth_vid) on synthetic videos (data/synth-vid, `dcn-data synth --video --train
# 40 --val 10`) from the same classifiers; results/table7_synth_vid.md (MSRA's VID AP). `--tasks`
# picks the columns (default det,seg,vid).
# `--set` overrides the classifier rows, `--detector-set` the detection rows (e.g. a shorter
# schedule), `--segmenter-set` the segmentation rows.
# Finished rows are not redone; an interrupted row resumes from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
case $1 in -h|--help) usage ;; esac
table=$1; shift
data=synth; arch=resnet50; threads=""; extra=(); detector_extra=(); segmenter_extra=(); results=results; seeds=(0); tasks=det,seg,vid
while [ $# -gt 0 ]; do
    case $1 in
        --set) extra+=(--set "${2:?--set needs key=value}"); shift 2 ;;
        --detector-set) detector_extra+=(--set "${2:?--detector-set needs key=value}"); shift 2 ;;
        --segmenter-set) segmenter_extra+=(--set "${2:?--segmenter-set needs key=value}"); shift 2 ;;
        --tasks) tasks=${2:?--tasks needs a comma-separated list of det, seg, vid}; shift 2 ;;
        --out) results=${2:?--out needs a folder}; shift 2 ;;
        --data) data=${2:?--data needs synth or imagenet}; shift 2 ;;
        --arch) arch=${2:?--arch needs resnet50, resnet101 or resnext101_32x4d}; shift 2 ;;
        --threads) threads="--threads ${2:?--threads needs a number}"; shift 2 ;;
        --seeds) IFS=, read -r -a seeds <<< "${2:?--seeds needs a comma-separated list}"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "pretraining_tables.sh: unknown argument '$1'" >&2; usage ;;
    esac
done
case $table in table6|table7) ;; *) echo "pretraining_tables.sh: the table must be table6 or table7, got '$table'" >&2; exit 2 ;; esac
case $data in synth|imagenet) ;; *) echo "pretraining_tables.sh: --data must be synth or imagenet, got '$data'" >&2; exit 2 ;; esac
case $arch in resnet50|resnet101|resnext101_32x4d) ;; *) echo "pretraining_tables.sh: unknown --arch '$arch'" >&2; exit 2 ;; esac
[ "$table" = table7 ] && [ "$data" != synth ] && { echo "pretraining_tables.sh: table7 runs on synthetic data only" >&2; exit 2; }
IFS=, read -r -a task_list <<< "$tasks"
for task in "${task_list[@]}"; do
    case $task in det|seg|vid) ;; *) echo "pretraining_tables.sh: --tasks takes det, seg and vid separated by commas, got '$task'" >&2; exit 2 ;; esac
done
for seed in "${seeds[@]}"; do
    [[ $seed =~ ^[0-9]+$ ]] || { echo "pretraining_tables.sh: --seeds takes non-negative integers separated by commas, got '$seed'" >&2; exit 2; }
done

make -s build >/dev/null
bin=.build/release
if [ "$data" = synth ] && [ ! -f data/synth-cls/geometry.json ]; then
    $bin/dcn-data synth-cls --out data/synth-cls --train-per-class 300 --val-per-class 100
fi
if [ "$table" = table7 ] && [[ $tasks == *det* ]] && [ ! -f data/synth/annotations/instances_train.json ]; then $bin/dcn-data synth --out data/synth; fi
if [ "$table" = table7 ] && [[ $tasks == *seg* ]] && [ ! -f data/synth-easy/VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt ]; then
    $bin/dcn-data synth --difficulty easy --semantic --out data/synth-easy
fi
if [ "$table" = table7 ] && [[ $tasks == *vid* ]] && [ ! -d data/synth-vid/ImageSets ]; then
    $bin/dcn-data synth --video --train 40 --val 10 --out data/synth-vid
fi

metric() { sed -n "s/.*\"$2\": *\([-0-9.eE+]*\).*/\1/p" "$1" | head -1; }
cell() {  # cell NAME SCALE FILE...: "mean (lowest-highest)" of NAME x SCALE over the files
    local name=$1 scale=$2 file; shift 2
    for file in "$@"; do metric "$file" "$name"; echo; done | awk -v s="$scale" '
        NF { v = s * $1; sum += v; n++; if (n == 1 || v < lo) lo = v; if (n == 1 || v > hi) hi = v }
        END { if (n == 0) print "-"; else if (n == 1) printf "%.1f", sum; else printf "%.1f (%.1f-%.1f)", sum / n, lo, hi }'
}
summary_cell() {  # summary_cell CONFIG ARGS...: "params | FLOPs" from dcn-train --summary --json
    local s; s=$($bin/dcn-train --config "$@" --summary --json)
    awk -v p="$(echo "$s" | sed -n 's/.*"params_total":\([0-9]*\).*/\1/p')" -v f="$(echo "$s" | sed -n 's/.*"flops_total":\([0-9]*\).*/\1/p')" \
        'BEGIN { printf "%.2fM | %.4fG", p / 1e6, f / 1e9 }'
}
run() {  # run OUT CONFIG ARGS...: trains into OUT unless it has its final evaluation
    local out=$1 config=$2; shift 2
    if [ -f "$out/eval_final_metrics.json" ]; then echo "== $out: done before"; return; fi
    if [ -e "$out/latest" ]; then
        echo "== $out: resuming"; $bin/dcn-train --config "$config" "$@" --set "output.dir=$out" --resume "$out/latest" $threads
    else
        echo "== $out: training"; $bin/dcn-train --config "$config" "$@" --set "output.dir=$out" --force $threads
    fi
}
seed_dir() { [ "$2" = 0 ] && echo "$1" || echo "$(dirname "$1")/seed$2/$(basename "$1")"; }
classifier_config() { [ "$data" = synth ] && echo "configs/synth_cls/$1.yaml" || echo "configs/imagenet/${arch}_$1.yaml"; }

# Table 6 rows (Table 7 needs regular and DCNv2).
methods="regular dcnv1 dcnv2"
[ "$table" = table7 ] && methods="regular dcnv2"
for method in $methods; do
    for seed in "${seeds[@]}"; do
        run "$(seed_dir "$results/$data/table6/$method" "$seed")" "$(classifier_config "$method")" --set "solver.seed=$seed" "${extra[@]}"
    done
done

mkdir -p "$results"
if [ "$table" = table6 ]; then
    markdown=$results/table6_$data.md
    {
        echo "# Table 6 on $data data (seeds $(IFS=,; echo "${seeds[*]}"))"
        echo
        [ "$data" = synth ] && echo "Accuracy on the geometrically shifted val split of data/synth-cls." && echo
        echo "| method | top-1 acc (%) | top-5 acc (%) | params | FLOPs |"
        echo "| --- | --- | --- | --- | --- |"
        for method in regular dcnv1 dcnv2; do
            files=(); for seed in "${seeds[@]}"; do files+=("$(seed_dir "$results/$data/table6/$method" "$seed")/eval_final_metrics.json"); done
            echo "| $method | $(cell top1 1 "${files[@]}") | $(cell top5 1 "${files[@]}") | $(summary_cell "$(classifier_config "$method")" "${extra[@]}") |"
        done
    } > "$markdown"
else
  if [[ $tasks == *det* ]]; then
    markdown=$results/table7_synth.md
    # row: name | detector row | pretrained classifier (none = from scratch) | pretrained_offsets
    rows=("regular, from scratch|roialign|none|true"
          "regular, regular-pretrained|roialign|regular|true"
          "DCNv2, from scratch|mdconv_c3-c5_mdpool|none|true"
          "DCNv2, regular-pretrained (offsets none)|mdconv_c3-c5_mdpool|regular|true"
          "DCNv2, DCNv2-pretrained, offsets re-initialised (none)|mdconv_c3-c5_mdpool|dcnv2|false"
          "DCNv2, DCNv2-pretrained with offsets (ImageNet)|mdconv_c3-c5_mdpool|dcnv2|true")
    {
        echo "# Table 7 on synthetic data (seeds $(IFS=,; echo "${seeds[*]}"))"
        echo
        echo "| method | offset & modulation pretraining | AP | AP50 |"
        echo "| --- | --- | --- | --- |"
    } > "$markdown.tmp"
    for spec in "${rows[@]}"; do
        IFS='|' read -r name row pretrained offsets <<< "$spec"
        tag=$(echo "$name" | tr -c 'A-Za-z0-9\n' '_' | tr -s _)
        files=()
        for seed in "${seeds[@]}"; do
            args=(--set "solver.seed=$seed" --set "backbone.pretrained_offsets=$offsets")
            if [ "$pretrained" != none ]; then
                args+=(--set "backbone.weights=$(seed_dir "$results/synth/table6/$pretrained" "$seed")/model_final.safetensors" --set backbone.weights_prefix=model.)
            fi
            out=$(seed_dir "$results/synth/table7/$tag" "$seed")
            run "$out" "configs/synth/faster_rcnn_r50_$row.yaml" "${args[@]}" "${detector_extra[@]}"
            files+=("$out/eval_final_metrics.json")
        done
        case $pretrained in none) what="no pretraining" ;; regular) what="none (regular backbone)" ;;
                            *) [ "$offsets" = true ] && what="synthetic classification" || what="none (re-initialised)" ;; esac
        echo "| $name | $what | $(cell 'bbox\/AP' 100 "${files[@]}") | $(cell 'bbox\/AP50' 100 "${files[@]}") |" >> "$markdown.tmp"
    done
    mv "$markdown.tmp" "$markdown"
    echo "wrote $markdown"; cat "$markdown"
  fi
  if [[ $tasks == *seg* ]]; then
    markdown=$results/table7_synth_seg.md
    # row: name | config | pretrained classifier | pretrained_offsets
    rows=("regular|regular|regular|true"
          "DCNv2|dcnv2|regular|true"
          "DCNv2 + offset pretraining|dcnv2|dcnv2|true")
    {
        echo "# Table 7, segmentation column, on easy synthetic label maps (seeds $(IFS=,; echo "${seeds[*]}"))"
        echo
        echo "| method | pretrained classifier | mIoU (%) | aAcc (%) |"
        echo "| --- | --- | --- | --- |"
    } > "$markdown.tmp"
    for spec in "${rows[@]}"; do
        IFS='|' read -r name config pretrained offsets <<< "$spec"
        tag=$(echo "$name" | tr -c 'A-Za-z0-9\n' '_' | tr -s _)
        files=()
        for seed in "${seeds[@]}"; do
            args=(--set "solver.seed=$seed" --set "backbone.pretrained_offsets=$offsets"
                  --set "backbone.weights=$(seed_dir "$results/synth/table6/$pretrained" "$seed")/model_final.safetensors" --set backbone.weights_prefix=model.)
            out=$(seed_dir "$results/synth/table7_seg/$tag" "$seed")
            run "$out" "configs/synth_seg/$config.yaml" "${args[@]}" "${segmenter_extra[@]}"
            files+=("$out/eval_final_metrics.json")
        done
        echo "| $name | $pretrained | $(cell mIoU 100 "${files[@]}") | $(cell aAcc 100 "${files[@]}") |" >> "$markdown.tmp"
    done
    mv "$markdown.tmp" "$markdown"
    echo "wrote $markdown"; cat "$markdown"
  fi
  if [[ $tasks == *vid* ]]; then
    markdown=$results/table7_synth_vid.md
    # row: name | config | pretrained classifier
    rows=("regular|regular|regular" "DCNv2|dcnv2|regular" "DCNv2 + offset pretraining|dcnv2|dcnv2")
    {
        echo "# Table 7, VID column, on synthetic videos (seeds $(IFS=,; echo "${seeds[*]}"))"
        echo
        echo "| method | pretrained classifier | VID AP (%) |"
        echo "| --- | --- | --- |"
    } > "$markdown.tmp"
    for spec in "${rows[@]}"; do
        IFS='|' read -r name config pretrained <<< "$spec"
        tag=$(echo "$name" | tr -c 'A-Za-z0-9\n' '_' | tr -s _)
        files=()
        for seed in "${seeds[@]}"; do
            args=(--set "solver.seed=$seed" --set backbone.pretrained_offsets=true
                  --set "backbone.weights=$(seed_dir "$results/synth/table6/$pretrained" "$seed")/model_final.safetensors" --set backbone.weights_prefix=model.)
            out=$(seed_dir "$results/synth/table7_vid/$tag" "$seed")
            run "$out" "configs/synth_vid/$config.yaml" "${args[@]}" "${detector_extra[@]}"
            files+=("$out/eval_final_metrics.json")
        done
        echo "| $name | $pretrained | $(cell 'vid\/AP' 100 "${files[@]}") |" >> "$markdown.tmp"
    done
    mv "$markdown.tmp" "$markdown"
    echo "wrote $markdown"; cat "$markdown"
  fi
  if [[ $tasks == *det* && $tasks == *seg* && $tasks == *vid* ]]; then
    # The paper's four columns from the runs above: the synthetic detector scored with VOC's
    # metric (AP50) and COCO's (AP), the segmentation and VID columns.
    markdown=$results/table7_synth_all.md
    files_of() { local f=(); for seed in "${seeds[@]}"; do f+=("$(seed_dir "$results/synth/$1" "$seed")/eval_final_metrics.json"); done; echo "${f[@]}"; }
    {
        echo "# Table 7 on synthetic data, four columns (seeds $(IFS=,; echo "${seeds[*]}"))"
        echo
        echo "| method | det AP50 (VOC's metric) | seg mIoU | VID AP | det AP (COCO's metric) |"
        echo "| --- | --- | --- | --- | --- |"
        for row in "regular|regular_regular_pretrained|regular|regular" \
                   "DCNv2|DCNv2_regular_pretrained_offsets_none_|DCNv2|DCNv2" \
                   "DCNv2 + offset pretraining|DCNv2_DCNv2_pretrained_with_offsets_ImageNet_|DCNv2_offset_pretraining|DCNv2_offset_pretraining"; do
            IFS='|' read -r name det seg vid <<< "$row"
            read -r -a d <<< "$(files_of "table7/$det")"; read -r -a g <<< "$(files_of "table7_seg/$seg")"; read -r -a v <<< "$(files_of "table7_vid/$vid")"
            echo "| $name | $(cell 'bbox\/AP50' 100 "${d[@]}") | $(cell mIoU 100 "${g[@]}") | $(cell 'vid\/AP' 100 "${v[@]}") | $(cell 'bbox\/AP' 100 "${d[@]}") |"
        done
    } > "$markdown"
    echo "wrote $markdown"; cat "$markdown"
  fi
  exit 0
fi
echo "wrote $markdown"
cat "$markdown"
