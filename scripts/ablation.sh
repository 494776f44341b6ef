#!/usr/bin/env bash
# Reproduces the paper's ablation tables with this project's tools and writes them as Markdown.
#
#   scripts/ablation.sh table1|table2|table3|demo [--data coco|voc|synth] [--schedule demo|1x]
#                       [--detector faster|mask] [--seeds 0,1,2] [--rows a,b] [--focus N] [--threads N] [--set key=value]... [--out DIR]
#   scripts/ablation.sh table5 ...          (test resolution and multi-scale testing: scripts/resolution_sweep.sh)
#   scripts/ablation.sh table6|table7 ...   (classification and pretraining: scripts/pretraining_tables.sh)
#
# table1: the deformable rows at shorter side 1000 (paper's Table 1); table2: the same rows at 800
# (Table 2); table3: R-CNN feature mimicking, regions None / FG & BG / BG only / FG only (Table 3);
# demo: regular vs dconv vs mdconv + mdpool vs + mimic on the easy synthetic data with the
# settings of `make demo` (configs/demo.yaml), the README's Results table (synth data only).
# Each row trains `configs/<data>/faster_rcnn_r50_<row>.yaml` into results/<data>/<table>/<row>/,
# evaluates it, and the table goes to results/<table>_<data>.md (AP, AP_S, AP_M, AP_L, params,
# FLOPs; for VOC data AP50 and AP70). Rows already evaluated are not redone; an interrupted row
# resumes from its last checkpoint. Synthetic data is generated on first use. `--set` passes a
# config override to every row (for example data paths); `--out` replaces results/. `--seeds`
# trains every row once per seed (solver.seed; seed s > 0 goes to .../<table>/seed<s>/<row>/) and
# each cell becomes the mean over the seeds with the lowest and highest value in brackets.
# `--rows a,b` trains and tabulates only those rows of the table (default: every row).
# `--detector mask` trains the Mask R-CNN rows (configs/<data>/mask_rcnn_r50_<row>.yaml) into
# results/<data>/<table>_mask/ and adds an AP_mask column, as the paper's tables do (not for VOC).
# `--focus N` adds two columns from `dcn-vis focus --max-objects N` on each row's final model (seed 0):
# the mean share of the ERF mass and of the saliency region inside the object's box, for res5 nodes
# at the centres of the first N objects of the evaluation split (docs/figures-1-2-5-spatial-support.md).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
case $1 in table5) exec scripts/resolution_sweep.sh "$@" ;; table6|table7) exec scripts/pretraining_tables.sh "$@" ;; esac
table=$1; shift
data=synth; schedule=demo; threads=""; extra=(); results=results; seeds=(0); seed_args=false; only_rows=(); detector=faster; focus=""
while [ $# -gt 0 ]; do
    case $1 in
        --set) extra+=(--set "${2:?--set needs key=value}"); shift 2 ;;
        --out) results=${2:?--out needs a folder}; shift 2 ;;
        --data) data=${2:?--data needs coco, voc or synth}; shift 2 ;;
        --schedule) schedule=${2:?--schedule needs demo or 1x}; shift 2 ;;
        --detector) detector=${2:?--detector needs faster or mask}; shift 2 ;;
        --threads) threads="--threads ${2:?--threads needs a number}"; shift 2 ;;
        --seeds) IFS=, read -r -a seeds <<< "${2:?--seeds needs a comma-separated list}"; seed_args=true; shift 2 ;;
        --rows) IFS=, read -r -a only_rows <<< "${2:?--rows needs a comma-separated list}"; shift 2 ;;
        --focus) focus=${2:?--focus needs a number of objects}; shift 2 ;;
        -h|--help) usage ;;
        *) echo "ablation.sh: unknown argument '$1'" >&2; usage ;;
    esac
done
case $data in coco|voc|synth) ;; *) echo "ablation.sh: --data must be coco, voc or synth, got '$data'" >&2; exit 2 ;; esac
case $schedule in demo|1x) ;; *) echo "ablation.sh: --schedule must be demo or 1x, got '$schedule'" >&2; exit 2 ;; esac
case $detector in faster|mask) ;; *) echo "ablation.sh: --detector must be faster or mask, got '$detector'" >&2; exit 2 ;; esac
if [ "$detector" = mask ] && [ "$data" = voc ]; then
    echo "ablation.sh: Mask R-CNN needs instance masks, which VOC detection data does not have: use --data coco or synth" >&2; exit 2
fi
if [ -n "$focus" ] && ! [[ $focus =~ ^[1-9][0-9]*$ ]]; then
    echo "ablation.sh: --focus takes a number of objects (at least 1), got '$focus'" >&2; exit 2
fi
for seed in "${seeds[@]}"; do
    [[ $seed =~ ^[0-9]+$ ]] || { echo "ablation.sh: --seeds takes non-negative integers separated by commas, got '$seed'" >&2; exit 2; }
done

deformable_rows="roipool roialign dcnv1 dconv_c5 dconv_c4-c5 dconv_c3-c5 dconv_c3-c5_dpool mdconv_c3-c5_mdpool"
case $table in
    table1) rows=$deformable_rows; size=(--set data.min_size=[1000] --set data.test_min_size=1000 --set data.max_size=1666) ;;
    table2) rows=$deformable_rows; size=() ;;
    table3) rows="mdconv_c3-c5_mdpool mdconv_c3-c5_mdpool_mimic_fgbg mdconv_c3-c5_mdpool_mimic_bg mdconv_c3-c5_mdpool_mimic_fg roialign roialign_mimic_fg"; size=() ;;
    demo) rows="roialign dconv_c3-c5 mdconv_c3-c5_mdpool mdconv_c3-c5_mdpool_mimic_fg"; size=() ;;
    *) echo "ablation.sh: the table must be table1, table2, table3 or demo, got '$table'" >&2; exit 2 ;;
esac
if [ ${#only_rows[@]} -gt 0 ]; then
    for row in "${only_rows[@]}"; do
        [[ " $rows " == *" $row "* ]] || { echo "ablation.sh: --rows: '$row' is not a row of $table (its rows: $rows)" >&2; exit 2; }
    done
    rows="${only_rows[*]}"
fi
# The demo table trains every row like configs/demo.yaml: easy synthetic data, lr 0.01, 2600 iterations.
demo_args=()
if [ "$table" = demo ]; then
    [ "$data" = synth ] || { echo "ablation.sh: the demo table runs on synth data only, got --data $data" >&2; exit 2; }
    [ "$schedule" = demo ] || { echo "ablation.sh: the demo table has its own schedule (configs/demo.yaml); drop --schedule" >&2; exit 2; }
    demo_args=(--set data.root=data/synth-easy --set solver.base_lr=0.01 --set solver.max_iter=2600
               --set 'solver.steps=[2000,2400]' --set solver.checkpoint_period=1300)
fi
# Synthetic images are small: the paper's sizes do not apply to them.
if [ "$data" = synth ]; then size=(); fi
config_dir=configs/$data
[ "$data" = voc ] && config_dir=configs/coco  # same rows; data.* must point at a VOC devkit (see configs/README.md)

schedule_args=()
if [ "$schedule" = 1x ]; then
    if [ "$data" = synth ]; then schedule_args=(--set solver.max_iter=2400 --set 'solver.steps=[1600,2200]')
    else schedule_args=(--set solver.max_iter=90000 --set 'solver.steps=[60000,80000]'); fi
fi

make -s build >/dev/null
bin=.build/release
if [ "$table" = demo ] && [ ! -f data/synth-easy/annotations/instances_val.json ]; then
    $bin/dcn-data synth --difficulty easy --out data/synth-easy
elif [ "$data" = synth ] && [ ${#extra[@]} -eq 0 ] && [ ! -f data/synth/annotations/instances_train.json ]; then
    $bin/dcn-data synth --out data/synth
fi

suffix=""; [ "$detector" = mask ] && suffix=_mask
out_root=$results/$data/$table$suffix
mkdir -p "$out_root"
markdown=$results/${table}${suffix}_${data}.md

metric() {  # metric FILE NAME: a number from a flat JSON object written by dcn-train
    sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" "$1" | head -1
}
cell() {  # cell NAME FILE...: the metric in percent, over several files "mean (lowest-highest)"
    local name=$1 file; shift
    for file in "$@"; do metric "$file" "$name"; echo; done | awk '
        NF { v = 100 * $1; sum += v; n++; if (n == 1 || v < lo) lo = v; if (n == 1 || v > hi) hi = v }
        END { if (n == 0) print "-"; else if (n == 1) printf "%.1f", sum; else printf "%.1f (%.1f-%.1f)", sum / n, lo, hi }'
}
millions() { awk -v v="$1" 'BEGIN { printf "%.1fM", v / 1e6 }'; }
billions() { awk -v v="$1" 'BEGIN { printf "%.1fG", v / 1e9 }'; }

row_config() {  # the config file and extra overrides of a row
    case $1 in
        roialign_mimic_fg) echo "$config_dir/${detector}_rcnn_r50_roialign.yaml --set mimic.regions=fg" ;;
        *) echo "$config_dir/${detector}_rcnn_r50_$1.yaml" ;;
    esac
}

{
    if [ ${#seeds[@]} -gt 1 ]; then
        echo "# ${table} on ${data} data (${schedule} schedule, seeds $(IFS=,; echo "${seeds[*]}"))"
    else
        echo "# ${table} on ${data} data (${schedule} schedule)"
    fi
    echo
    if [ "$data" = voc ]; then
        echo "| setting | AP50 | AP70 | params | FLOPs |"
        echo "| --- | --- | --- | --- | --- |"
    else
        # Mask R-CNN rows add AP_mask after the box columns.
        mask_head=""; mask_rule=""
        [ "$detector" = mask ] && { mask_head=" AP_mask |"; mask_rule=" --- |"; }
        case $table in
            table3) echo "| setting | regions to mimic | AP | AP_S | AP_M | AP_L |$mask_head params | FLOPs |"
                    echo "| --- | --- | --- | --- | --- | --- |$mask_rule --- | --- |" ;;
            demo) echo "| setting | AP | AP50 | AP_S | AP_M | AP_L |$mask_head params | FLOPs |"
                  echo "| --- | --- | --- | --- | --- | --- |$mask_rule --- | --- |" ;;
            *) echo "| setting | AP | AP_S | AP_M | AP_L |$mask_head params | FLOPs |"
               echo "| --- | --- | --- | --- | --- |$mask_rule --- | --- |" ;;
        esac
    fi
} > "$markdown.tmp"
if [ -n "$focus" ]; then  # two more columns on the header and the rule lines
    sed -i -e '/^| setting/s/$/ ERF in box | saliency in box |/' -e '/^| ---/s/$/ --- | --- |/' "$markdown.tmp"
fi

for row in $rows; do
    read -r -a cfg <<< "$(row_config "$row")"
    files=()
    for seed in "${seeds[@]}"; do
        out=$out_root/$row
        [ "$seed" = 0 ] || out=$out_root/seed$seed/$row
        args=("${cfg[@]:1}" "${size[@]}" "${schedule_args[@]}" "${demo_args[@]}" "${extra[@]}" --set "output.dir=$out")
        if $seed_args; then args+=(--set "solver.seed=$seed"); fi
        if [ ! -f "$out/eval_final_metrics.json" ]; then
            if [ -e "$out/latest" ]; then
                echo "== $row (seed $seed): resuming from $out/latest"
                $bin/dcn-train --config "${cfg[0]}" "${args[@]}" --resume "$out/latest" $threads
            else
                echo "== $row (seed $seed): training into $out"
                $bin/dcn-train --config "${cfg[0]}" "${args[@]}" $threads
            fi
        else
            echo "== $row (seed $seed): done before ($out/eval_final_metrics.json)"
        fi
        files+=("$out/eval_final_metrics.json")
    done
    summary=$($bin/dcn-train --config "${cfg[0]}" "${args[@]}" --summary --json)
    focus_cells=""
    if [ -n "$focus" ]; then
        first_out=$out_root/$row  # seed 0's model (or the first seed's)
        [ "${seeds[0]}" = 0 ] || first_out=$out_root/seed${seeds[0]}/$row
        if [ ! -f "$first_out/focus_$focus.json" ]; then
            $bin/dcn-vis focus --config "${cfg[0]}" "${args[@]}" --checkpoint "$first_out/model_final.safetensors" --max-objects "$focus" \
                --json "$first_out/focus_$focus.json" $threads
        fi
        share() { sed -n "s/.*\"$1\":{\"mean\":\([0-9.eE+-]*\).*/\1/p" "$first_out/focus_$focus.json" | awk '{ printf "%.1f", 100 * $1 }'; }
        focus_cells=" $(share erf_inside) | $(share saliency_inside) |"
    fi
    params=$(millions "$(echo "$summary" | sed -n 's/.*"params_total":\([0-9]*\).*/\1/p')")
    flops=$(billions "$(echo "$summary" | sed -n 's/.*"flops_total":\([0-9]*\).*/\1/p')")
    case $row in
        *mimic_fgbg) regions="FG & BG" ;; *mimic_bg) regions="BG only" ;; *mimic_fg) regions="FG only" ;; *) regions="None" ;;
    esac
    if [ "$data" = voc ]; then
        echo "| $row | $(cell 'AP50\/area\/mAP' "${files[@]}") | $(cell 'AP70\/area\/mAP' "${files[@]}") | $params | $flops |$focus_cells"
    else
        ap=$(cell 'bbox\/AP' "${files[@]}")
        by_size="$(cell 'bbox\/APs' "${files[@]}") | $(cell 'bbox\/APm' "${files[@]}") | $(cell 'bbox\/APl' "${files[@]}")"
        [ "$detector" = mask ] && by_size="$by_size | $(cell 'segm\/AP' "${files[@]}")"
        case $table in
            demo) echo "| $row | $ap | $(cell 'bbox\/AP50' "${files[@]}") | $by_size | $params | $flops |$focus_cells" ;;
            table3) echo "| $row | $regions | $ap | $by_size | $params | $flops |$focus_cells" ;;
            *) echo "| $row | $ap | $by_size | $params | $flops |$focus_cells" ;;
        esac
    fi >> "$markdown.tmp"
done
mv "$markdown.tmp" "$markdown"
echo "wrote $markdown"
cat "$markdown"
