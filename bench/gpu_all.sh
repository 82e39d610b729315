#!/usr/bin/env bash
# Every GPU figure of bench/README.md in one call of a GPU machine (16 cores, one H100/H200):
#   bash bench/gpu_all.sh HAR_ZIP NAMES_DIR OUT_DIR [STUDY_SECONDS]
# 1. bench/gpu.py: one epoch of three HAR models, loop before / now / seeds stacked (issue 15);
# 2. bench/spread.py har and names: the default study 3 times (3 studies at once, 5 workers each,
#    --device cuda; each stops starting trials after STUDY_SECONDS, default 170 s), each recommendation
#    retrained on the final seeds and tested once (issue 10's run-to-run spread).
# Results go to OUT_DIR as text files; the studies' logs as one tar file.
# The CUDA tests (pytest tests/test_train.py -k 'stack or diverging or cuda') need all of shared/data on the
# device beside the checkout: names/, names_data.zip and UCI_HAR_Dataset.zip (tests/conftest.py checks them).
set -u
HAR=$1 NAMES=$2 OUT=$3 SECONDS_PER_STUDY=${4:-170}
export PYTHONUNBUFFERED=1
nvidia-smi -L
nproc
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
timeout 120 python3 bench/gpu.py --device cuda --har "$HAR" --repeats 3 2>&1 | tee "$OUT/gpu.txt"
for task in har names; do
  data=$HAR; [ "$task" = names ] && data=$NAMES
  timeout $((SECONDS_PER_STUDY + 150)) python3 bench/spread.py $task --runs 3 --parallel 3 --workers 5 --device cuda \
    --data "$data" --dir /tmp/spread --timeout "$SECONDS_PER_STUDY" 2>&1 | tee "$OUT/spread_$task.txt"
  pkill -f "search.$task" || true
done
tar czf "$OUT/spread_logs.tgz" -C /tmp/spread . 2>/dev/null || true
