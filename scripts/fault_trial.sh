#!/bin/bash
# Adversarial CLI trial of issue 23, written from the README only (docs/faults.md): wrong flags, wrong files, kills,
# concurrent runs. Each case: the exit code expected, the command; printed: clean (right code, one error line), rc.
#   bash scripts/fault_trial.sh [WORK_DIR]     (about 5 minutes; WORK_DIR is emptied first, default /tmp/psa-fault-trial)
ROOT=$(cd "$(dirname "$0")/.." && pwd); P=$ROOT/.venv/bin/python; B=$ROOT/build.py
WORK=${1:-/tmp/psa-fault-trial}; rm -rf "$WORK"; mkdir -p "$WORK"; cd "$WORK" || exit 3
$P $B train --variant relu --epochs 1 --embed-dim 16 --depth 1 --no-progress --out run1 > /dev/null 2>&1
PYTHONPATH=$ROOT/tests $P -c "from pathlib import Path; from networks import export_network; export_network('cnn_permuted', Path('cnn.onnx'))" \
    > /dev/null 2>&1
$P $B export --checkpoint run1/model.pt --out m.onnx --calibration-batches 1 >/dev/null 2>&1
echo "{}" > empty.json; cp "$ROOT/README.md" readme.md
printf 'target_fps: 1000\nsynth_clk_period_ns: 5.0\nfpga_part: xcu50-fsvh2104-2-e\n' > small.yaml
n=0; clean=0
case_() { # expected_rc description -- command...
  exp=$1; shift; desc=$1; shift
  n=$((n+1))
  timeout 300 "$@" > out.txt 2> err.txt; rc=$?
  lines=$(grep -c . err.txt)
  ok=no; if [ "$rc" = "$exp" ] && { [ "$exp" = 0 ] || [ "$lines" = 1 ]; }; then ok=yes; clean=$((clean+1)); fi
  printf '%-3s %-4s rc=%-3s exp=%-3s lines=%-2s %s | %s\n' "$n" "$ok" "$rc" "$exp" "$lines" "$desc" "$(tail -1 err.txt | cut -c1-150)"
}
case_ 2 "train variant typo" $P $B train --variant lerp-psa --out t1
case_ 2 "train negative epochs" $P $B train --epochs -1 --out t2
case_ 2 "train over a finished run" $P $B train --variant relu --epochs 1 --out run1
case_ 2 "train cifar10 without data" $P $B train --dataset cifar10 --epochs 1 --out t3
case_ 2 "train --device cuda without a GPU" $P $B train --device cuda --epochs 1 --out t4
case_ 2 "train batch 0" $P $B train --batch-size 0 --out t5
case_ 2 "train lr nan" $P $B train --lr nan --out t6
case_ 2 "train threads 0" $P $B train --threads 0 --out t7
case_ 2 "train --bits 9 --qat" $P $B train --qat --init run1/model.pt --bits 9 --out t8
case_ 2 "export missing checkpoint" $P $B export --checkpoint nope.pt --out x.onnx
case_ 2 "export checkpoint folder" $P $B export --checkpoint run1 --out x.onnx
case_ 2 "export --out a folder" $P $B export --checkpoint run1/model.pt --out run1
case_ 2 "export an onnx as checkpoint" $P $B export --checkpoint cnn.onnx --out x.onnx
case_ 2 "lower a .pt" $P $B lower --model run1/model.pt --out l.onnx
case_ 2 "lower --out .json" $P $B lower --model m.onnx --out l.json
case_ 2 "lower bad --mode" $P $B lower --model m.onnx --out l.onnx --mode bogus
case_ 0 "lower" $P $B lower --model m.onnx --out l.onnx
case_ 2 "lower the lowered model in place" $P $B lower --model l.onnx --out l.onnx
case_ 2 "build missing config" $P $B build --model m.onnx --config nope.yaml --out b
case_ 2 "build into a training folder" $P $B build --model m.onnx --config small.yaml --out run1
case_ 2 "build stop-step typo" $P $B build --model m.onnx --config small.yaml --out b --stop-step step_bogus
case_ 2 "build markdown as config" $P $B build --model m.onnx --config readme.md --out b
case_ 2 "build empty json config" $P $B build --model m.onnx --config empty.json --out b
case_ 2 "build a checkpoint as model" $P $B build --model run1/model.pt --config small.yaml --out b
case_ 2 "report a non-build" $P $B report run1
case_ 2 "report no args" $P $B report
case_ 2 "eval cifar10 without data" $P $B eval --checkpoint m.onnx --dataset cifar10
case_ 2 "eval no args" $P $B eval
case_ 2 "sweep markdown space" $P $B sweep --space readme.md --out sw
case_ 2 "sweep cpus 0" $P $B sweep --space "$ROOT/sweeps/spaces/digits_mlp.yaml" --out sw --cpus 0
case_ 2 "demo jobs 0" $P $B demo --jobs 0 --out d
case_ 2 "bench unknown" $P $B bench bogus
case_ 2 "command typo" $P $B biuld
case_ 2 "synth-check a .pt" $P $B synth-check --model run1/model.pt --out s
# concurrent exports on one --out
( $P $B export --checkpoint run1/model.pt --out c.onnx --calibration-batches 1 > /dev/null 2> e1.txt; echo $? > r1.txt ) &
( $P $B export --checkpoint run1/model.pt --out c.onnx --calibration-batches 1 > /dev/null 2> e2.txt; echo $? > r2.txt ) &
wait; n=$((n+1)); codes="$(cat r1.txt r2.txt | sort | tr '\n' ' ')"
if [ "$codes" = "0 2 " ]; then clean=$((clean+1)); ok=yes; else ok=no; fi
echo "$n   $ok  concurrent exports: codes $codes | $(cat e1.txt e2.txt | tail -1 | cut -c1-150)"
# SIGTERM a train after 6 s
$P $B train --variant lerp_psa --epochs 50 --embed-dim 64 --out k1 --no-progress > /dev/null 2> ek.txt & pid=$!
sleep 6; kill -TERM $pid; wait $pid; rc=$?; n=$((n+1))
left=$(ls -A k1 2>/dev/null | grep '^\.' | wc -l)
if [ $rc = 130 ] && [ "$left" = 0 ] && [ "$(grep -c . ek.txt)" = 1 ]; then clean=$((clean+1)); ok=yes; else ok=no; fi
echo "$n   $ok  SIGTERM train: rc=$rc leftovers=$left | $(tail -1 ek.txt)"
# SIGINT a build during finn steps, over a finished build
$P $B build --model m.onnx --config small.yaml --out bk --stop-step step_generate_estimate_reports > /dev/null 2>&1
before=$(find bk -type f | sort | xargs md5sum | md5sum)
$P $B build --model m.onnx --config small.yaml --out bk --stop-step step_generate_estimate_reports > /dev/null 2> eb.txt & pid=$!
for i in $(seq 1 600); do ls -d .bk.*.partial/intermediate_models 2>/dev/null | grep -q . && break; sleep 0.1; done
sleep 1; kill -INT $pid; wait $pid; rc=$?; n=$((n+1))
after=$(find bk -type f | sort | xargs md5sum | md5sum)
if [ $rc = 130 ] && [ "$before" = "$after" ] && [ ! -e bk.failed ] && [ "$(grep -c . eb.txt)" = 1 ]; then clean=$((clean+1)); ok=yes; else ok=no; fi
echo "$n   $ok  SIGINT build mid-finn: rc=$rc kept=$([ "$before" = "$after" ] && echo yes) failed_dir=$([ -e bk.failed ] && echo yes) | $(tail -1 eb.txt | cut -c1-150)"
echo "TOTAL $clean clean of $n"
