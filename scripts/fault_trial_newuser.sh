#!/usr/bin/env bash
# A new user's first hour, adversarially: ~40 cases written from README.md and the docs it links alone.
# usage: bash scripts/fault_trial_newuser.sh [REPO (default: this checkout)] [WORK (default: /tmp/nu-trial/w)]
# (about 6 minutes on 2 cores; as root it also mounts a small tmpfs (full disk) and uses chattr +i (read-only).)
# Writes WORK/results.tsv and WORK/results.md. A case is clean when its exit code is the expected kind, a failure
# says exactly one line on stderr that matches what it must name, nothing good was lost and nothing hung.
set -u
REPO=$(cd "${1:-$(dirname "$0")/..}" && pwd); W=${2:-/tmp/nu-trial/w}
HERE=$(cd "$(dirname "$0")" && pwd)
PY="$REPO/.venv/bin/python"; B="$PY $REPO/build.py"
cd "$REPO"
for d in "$W"/ro "$W"/full; do [ -d "$d" ] && { chattr -i "$d" 2>/dev/null; umount "$d" 2>/dev/null; }; done
rm -rf "$W"; mkdir -p "$W"; RES="$W/results.tsv"; : >"$RES"
CFG=build_configs/unrolled.yaml; STOP="--stop-step step_generate_estimate_reports"

row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RES"; }  # id expect actual lines last lost clean cmd
# case ID EXPECT(regex of rc, e.g. 2 or 0|1) MUST(regex the error line must match) CMD [CHECK: exits 0 if nothing lost]
case_() {
  local id=$1 exp=$2 must=$3 cmd=$4 check=${5:-true} rc lines last lost=ok clean=no
  timeout -s INT 300 bash -c "$cmd" >"$W/$id.out" 2>"$W/$id.err"; rc=$?
  lines=$(grep -c . "$W/$id.err"); last=$(grep . "$W/$id.err" | tail -1 | cut -c1-300)
  bash -c "$check" >/dev/null 2>&1 || lost=LOST
  if [[ "$rc" =~ ^($exp)$ ]] && [ "$lost" = ok ]; then
    if [ "$rc" = 0 ] || { [ "$lines" = 1 ] && [[ "$last" =~ $must ]]; }; then clean=yes; fi
  fi
  row "$id" "$exp" "$rc" "$lines" "$last" "$lost" "$clean" "$cmd"; echo "$id: rc $rc (want $exp) $clean | $last"
}
sha() { sha256sum "$@" | cut -c1-64 | tr '\n' ' '; }; export -f sha
SIG="$PY $HERE/fault_trial_newuser_sig.py"

# --- inputs: the trial's own networks (gen.py) and a README run ----------------------------------------------------
$PY "$HERE/fault_trial_newuser_gen.py" "$W" >"$W/gen.log" 2>&1 || { echo "gen failed: $(tail -1 "$W/gen.log")"; exit 3; }
# API cases: the exception a user's script gets (clean = raised with one line naming the argument and its range)
while read -r line; do
  id=$(echo "$line" | $PY -c 'import json,sys; print(json.load(sys.stdin)["case"])')
  raised=$(echo "$line" | $PY -c 'import json,sys; print(int(json.load(sys.stdin)["raised"]))')
  msg=$(echo "$line" | $PY -c 'import json,sys; m=json.load(sys.stdin)["msg"]; print(m.splitlines()[0][:300] if m else "")')
  case $id in
    api_*) case $id in api_grid1) must=grid_size;; api_bits*) must=bit_width;; api_negrange) must=grid_range;; api_wrongch) must=channel;; *) must='QuantIdentity|input quant';; esac; exp=raise; act=$([ "$raised" = 1 ] && echo raise || echo ok)
           clean=no; [ "$act" = raise ] && [[ "$msg" =~ $must ]] && clean=yes; [ "$id" = api_noinq_export ] && [ "$act" = ok ] && continue  # judged by build_no_input_quantizer
           row "$id" "$exp" "$act" "$([ -n "$msg" ] && echo 1 || echo 0)" "$msg" ok "$clean" "python: $id (fault_trial_newuser_gen.py)"; echo "$id: $act $clean | $msg";;
    *) [ "$raised" = 1 ] && echo "input $id failed: $msg";;
  esac
done <"$W/api.jsonl"

$B train --variant lerp_psa --hidden-factor 1 --epochs 2 --out "$W/run" >/dev/null 2>&1
$B lower --model "$W/mlp.onnx" --out "$W/mlp_low.onnx" >/dev/null 2>&1
G="$W/mlp_low.onnx"

# --- own networks through the CLI -------------------------------------------------------------------------------------
case_ build_mlp 0 . "$B build --model $G --config $CFG --out $W/b_good $STOP"
GOOD=$(sha "$W/b_good/summary.json")
case_ build_cnn_readme 0 . "$B build --model $W/cnn.onnx --config $CFG --out $W/b_cnn $STOP"
case_ build_softmax_end 0 . "$B build --model $W/mlp_softmax.onnx --config $CFG --out $W/b_softmax $STOP"
case_ build_logsoftmax_end '0|1' 'LogSoftmax' "$B build --model $W/mlp_logsoftmax.onnx --config $CFG --out $W/b_logsoftmax $STOP"
case_ build_batchnorm 0 . "$B build --model $W/mlp_bn.onnx --config $CFG --out $W/b_bn $STOP"
case_ build_gelu 0 . "$B build --model $W/mlp_gelu.onnx --config $CFG --out $W/b_gelu $STOP"
case_ lower_silu_on_accumulator 2 'QuantIdentity' "$B lower --model $W/mlp_silu_acc.onnx --out $W/silu_low.onnx"
case_ build_no_input_quantizer '1|2' 'input|quantiz|QuantIdentity' "$B build --model $W/mlp_noinq.onnx --config $CFG --out $W/b_noinq $STOP"
case_ lower_float_onnx 2 'quantiz|Quant' "$B lower --model $W/float.onnx --out $W/float_low.onnx"
case_ build_float_onnx 2 'quantiz|Quant' "$B build --model $W/float.onnx --config $CFG --out $W/b_float $STOP"
cp "$W/run/model.pt" "$W/really_a_pt.onnx"
case_ lower_pt_named_onnx 2 'really_a_pt.onnx' "$B lower --model $W/really_a_pt.onnx --out $W/pt_low.onnx"
case_ lower_opset99 2 'opset' "$B lower --model $W/mlp_opset99.onnx --out $W/op_low.onnx"
case_ build_opset99 2 'opset' "$B build --model $W/mlp_opset99.onnx --config $CFG --out $W/b_op $STOP"
case_ build_dynamic_batch 2 'batch|dim' "$B build --model $W/mlp_dynbatch.onnx --config $CFG --out $W/b_dyn $STOP"
case_ build_batch4 2 'batch' "$B build --model $W/mlp_batch4.onnx --config $CFG --out $W/b_b4 $STOP"
case_ eval_input_32_on_digits 2 '32|64|shape' "$B eval --checkpoint $W/mlp_in32.onnx --dataset digits"
case_ train_grid_size_1 2 'grid-size' "$B train --grid-size 1 --epochs 1 --out $W/t_grid1"

# --- configs ------------------------------------------------------------------------------------------------------------
cfg() { { grep -v "^$1:" "$CFG"; printf '%s\n' "$2"; } >"$W/$3.yaml"; }
cfg fpga_part 'fpga_part: 123' c_part_int
case_ config_fpga_part_int 2 'fpga_part' "$B build --model $G --config $W/c_part_int.yaml --out $W/b_c1 $STOP"
cfg target_fps 'target_fps: fast' c_fps_str
case_ config_target_fps_string 2 'target_fps' "$B build --model $G --config $W/c_fps_str.yaml --out $W/b_c2 $STOP"
cfg synth_clk_period_ns 'synth_clk_period_ns: 0' c_clk0
case_ config_clock_zero 2 'synth_clk_period_ns' "$B build --model $G --config $W/c_clk0.yaml --out $W/b_c3 $STOP"
printf -- '- fpga_part: xcu50-fsvh2104-2-e\n- target_fps: 1000\n' >"$W/c_list.yaml"
case_ config_is_a_list 2 'c_list.yaml' "$B build --model $G --config $W/c_list.yaml --out $W/b_c4 $STOP"
printf 'target_fps: 1000\n\tfpga_part: x\n' >"$W/c_tab.yaml"
case_ config_tab_indent 2 'c_tab.yaml' "$B build --model $G --config $W/c_tab.yaml --out $W/b_c5 $STOP"
cfg folding_config_file 'folding_config_file: nothere.json' c_fold
case_ config_folding_file_missing 2 'nothere.json' "$B build --model $G --config $W/c_fold.yaml --out $W/b_c6 $STOP"
sed 's/step_lower_quantized_functions/step_lower_quantised_functions/' "$CFG" >"$W/c_step.yaml"
case_ config_step_british_spelling 2 'step_lower_quantized_functions' "$B build --model $G --config $W/c_step.yaml --out $W/b_c7 $STOP"

# --- paths ----------------------------------------------------------------------------------------------------------------
echo keep >"$W/iam_a_file"
case_ build_out_is_file 2 'iam_a_file' "$B build --model $G --config $CFG --out $W/iam_a_file $STOP" "grep -qx keep $W/iam_a_file"
mkdir -p "$W/adir"; echo mine >"$W/adir/notes.txt"
case_ lower_out_is_dir 2 'adir' "$B lower --model $W/mlp.onnx --out $W/adir" "grep -qx mine $W/adir/notes.txt"
mkdir -p "$W/my models"; cp "$W/mlp.onnx" "$W/my models/mödel ü.onnx"
case_ unicode_spaces_lower 0 . "$B lower --model '$W/my models/mödel ü.onnx' --out '$W/my models/tief ß.onnx'"
case_ unicode_spaces_build 0 . "$B build --model '$W/my models/tief ß.onnx' --config $CFG --out '$W/aus gabe/bäu' $STOP"
if [ "$(id -u)" = 0 ]; then
mkdir -p "$W/ro"; chattr +i "$W/ro"
case_ lower_out_read_only 3 'ro' "$B lower --model $W/mlp.onnx --out $W/ro/x.onnx"
chattr -i "$W/ro"
mkdir -p "$W/full"; mount -t tmpfs -o size=96k tmpfs "$W/full" && head -c 60000 /dev/zero >"$W/full/pad"
case_ export_disk_full 3 'full|space' "$B export --checkpoint $W/run/model.pt --out $W/full/x.onnx" "! ls -a $W/full | grep -q 'x\.onnx'"
umount "$W/full"
fi
mkdir -p "$W/emptydir"; : >"$W/empty.onnx"
case_ build_model_is_dir 2 'emptydir' "$B build --model $W/emptydir --config $CFG --out $W/b_md $STOP"
case_ lower_model_empty_file 2 'empty.onnx' "$B lower --model $W/empty.onnx --out $W/e_low.onnx"

# --- two writers, interrupts, re-runs ---------------------------------------------------------------------------------------
cp -r "$W/b_good" "$W/b_twice"; T0=$(sha "$W/b_twice/summary.json")
( $B build --model $G --config $CFG --out "$W/b_twice" $STOP >"$W/tw1.out" 2>"$W/tw1.err"; echo $? >"$W/tw1.rc" ) &
sleep 3; timeout 300 $B build --model $W/mlp_bn.onnx --config $CFG --out "$W/b_twice" $STOP >"$W/tw2.out" 2>"$W/tw2.err"; r2=$?; wait
r1=$(cat "$W/tw1.rc"); l2=$(grep . "$W/tw2.err" | tail -1 | cut -c1-300); lost=ok
$PY -c "import json,sys; json.load(open(sys.argv[1]))" "$W/b_twice/summary.json" 2>/dev/null || lost=LOST
clean=no; [ "$r1" = 0 ] && [[ "$r2" =~ ^(2|3)$ ]] && [ "$(grep -c . "$W/tw2.err")" = 1 ] && [[ "$l2" =~ b_twice ]] && [ $lost = ok ] && clean=yes
row two_builds_one_out "0 and 2|3" "$r1 and $r2" "$(grep -c . "$W/tw2.err")" "$l2" $lost $clean "two builds on one --out, the second 3 s later"
echo "two_builds_one_out: $r1 $r2 $clean | $l2"
( $B train --variant relu --epochs 3 --out "$W/t_twice" --no-progress >"$W/tt1.out" 2>"$W/tt1.err"; echo $? >"$W/tt1.rc" ) &
sleep 0.5; timeout 300 $B train --variant gelu --epochs 3 --out "$W/t_twice" --no-progress >"$W/tt2.out" 2>"$W/tt2.err"; r2=$?; wait
r1=$(cat "$W/tt1.rc"); l2=$(grep . "$W/tt2.err" | tail -1 | cut -c1-300)
clean=no; [ "$r1" = 0 ] && [[ "$r2" =~ ^(2|3)$ ]] && [ "$(grep -c . "$W/tt2.err")" = 1 ] && clean=yes
row two_trains_one_out "0 and 2|3" "$r1 and $r2" "$(grep -c . "$W/tt2.err")" "$l2" ok $clean "two train runs (relu, gelu) on one --out"
echo "two_trains_one_out: $r1 $r2 $clean | $l2"
cp -r "$W/b_good" "$W/b_int"
case_ sigint_build_mid_steps 130 'nterrupt' "$SIG INT 'Running step: step_streamline' $W/int.log -- $B build --model $W/mlp_bn.onnx --config $CFG --out $W/b_int $STOP" \
  "[ \"\$(sha $W/b_int/summary.json)\" = \"$GOOD\" ] && [ ! -e $W/b_int.failed ]"
case_ rerun_build_after_sigint 0 . "$B build --model $W/mlp_bn.onnx --config $CFG --out $W/b_int $STOP" "[ ! -e $W/b_int.failed ]"
cp $W/mlp.onnx $W/keep.onnx; K=$(sha $W/keep.onnx)
case_ sigterm_export_at_2s 130 'nterrupt' "timeout --preserve-status -s TERM 2 $B export --checkpoint $W/run/model.pt --out $W/keep.onnx" \
  "[ \"\$(sha $W/keep.onnx)\" = \"$K\" ]"
case_ sigint_train_mid_epochs 130 'nterrupt' "$SIG INT 'epoch 3/' $W/tr.log -- $B train --variant lerp_psa --epochs 40 --out $W/t_res" \
  "$B eval --checkpoint $W/t_res/model.pt"
case_ rerun_train_resume_after_sigint 0 . "$B train --variant lerp_psa --epochs 40 --out $W/t_res --resume"

# --- the wrong thing to the right command -------------------------------------------------------------------------------------
case_ report_on_onnx_file 2 'mlp_low.onnx' "$B report $G --out $W/rep1"
case_ report_on_train_run 2 'summary.json' "$B report $W/run --out $W/rep2"
case_ report_out_is_build_dir 2 'b_good' "$B report $W/b_cnn --out $W/b_good" "[ \"\$(sha $W/b_good/summary.json)\" = \"$GOOD\" ]"
case_ eval_on_build_dir 2 'b_good' "$B eval --checkpoint $W/b_good"
case_ synth_check_on_pt 2 'model.pt' "$B synth-check --model $W/run/model.pt --out $W/sc1"
case_ export_from_lowered_onnx 2 'mlp_low.onnx' "$B export --checkpoint $G --out $W/re.onnx"
case_ train_init_from_onnx 2 'mlp.onnx' "$B train --init $W/mlp.onnx --epochs 1 --out $W/t_init"
$PY -c "import numpy as np; np.save('$W/wrong.npy', np.zeros((5, 1, 8, 8), np.float32))"
case_ verify_data_wrong_shape 2 'wrong.npy' "$B build --model $G --config $CFG --out $W/b_vd $STOP --verify-data $W/wrong.npy"
mkdir -p "$W/nodemo"
case_ notebook_without_demo 1 'demo' "PSA_FINN_DEMO_DIR=$W/nodemo $PY -m nbconvert --to html --execute notebooks/resource_report.ipynb --output-dir $W/nb 2>&1 >/dev/null | sed 's/\x1b\\[[0-9;]*m//g' | grep -E '^[A-Za-z]*(Error|Exception):' | tail -1 >&2; exit \${PIPESTATUS[0]}"

# --- table ---------------------------------------------------------------------------------------------------------------------
n=$(wc -l <"$RES"); c=$(cut -f7 "$RES" | grep -cx yes)
{ echo "# New-user fault trial: $c of $n clean"; echo; echo "| case | want | got | stderr lines | last stderr line | lost | clean |"; echo "|---|---|---|---|---|---|---|"
  while IFS=$'\t' read -r id e a l last lost cl cmd; do echo "| $id | $e | $a | $l | ${last//|/\\|} | $lost | $cl |"; done <"$RES"; } >"$W/results.md"
echo "clean: $c of $n"
