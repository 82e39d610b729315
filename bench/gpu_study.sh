#!/usr/bin/env bash
# The guide's GPU budget (100 HAR trials <= 3 min on one H100-class GPU), measured on one GPU machine:
#   bash bench/gpu_study.sh HAR_ZIP OUT_DIR [STUDY_SECONDS] [REPORT_SECONDS]
# 1. the default HAR study, alone on the machine (`python -m search.har --trials 100 --sampler-seed 0`:
#    default workers, one per core, and device auto, so CUDA), timed from start to exit; its trial counts;
# 2. its report on the same machine (`python -m search.report har --baselines quick`: re-ranking and the
#    final evaluations in one pool of CUDA workers), timed the same way.
# Each step is cut at its seconds (defaults 360 and 180) so the figures come back inside one lease.
# OUT_DIR gets study.txt, report.txt, the study's SQLite file and report.tgz.
# TRIALS and STUDY_ARGS (environment) shrink it for a check on a CPU, e.g.
#   TRIALS=2 STUDY_ARGS="--family linear --epochs 1 --device cpu" bash bench/gpu_study.sh HAR /tmp/out 60 60
set -u
HAR=$1 OUT=$2 STUDY_SECONDS=${3:-360} REPORT_SECONDS=${4:-180}
export PYTHONUNBUFFERED=1
WORK=$(mktemp -d)
DB=sqlite:///$OUT/har_study.db
{ nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"; echo "cores: $(nproc)"
  python3 -c "import torch, optuna; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu',
torch.cuda.get_device_name() if torch.cuda.is_available() else '', 'optuna', optuna.__version__)"; } | tee "$OUT/study.txt"
start=$(date +%s.%N)
# shellcheck disable=SC2086  # STUDY_ARGS is a list of arguments
timeout "$STUDY_SECONDS" python3 -m search.har --trials "${TRIALS:-100}" --sampler-seed 0 --data "$HAR" \
  --storage "$DB" --artifacts "$WORK/artifacts" ${STUDY_ARGS:-} > "$WORK/study.log" 2>&1
rc=$?
end=$(date +%s.%N)
tail -n 30 "$WORK/study.log" >> "$OUT/study.txt"
python3 - "$DB" "$rc" "$start" "$end" <<'EOF' | tee -a "$OUT/study.txt"
import sys, collections, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
db, rc, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
study = optuna.load_study(study_name="har", storage=db)
states = collections.Counter(t.state.name for t in study.trials)
best = study.best_trial
print(f"study: exit {rc}, wall {end - start:.1f} s ({(end - start) / 60:.2f} min), trials {dict(states)}, "
      f"best #{best.number} {best.value:.4f} {best.params}")
EOF
start=$(date +%s.%N)
timeout "$REPORT_SECONDS" python3 -m search.report har --storage "$DB" --data "$HAR" --out "$WORK/reports" \
  --baselines quick > "$WORK/report.log" 2>&1
rc=$?
end=$(date +%s.%N)
cp "$WORK/report.log" "$OUT/report.txt"
echo "report: exit $rc, wall $(python3 -c "print(f'{$end - $start:.1f} s')")" | tee -a "$OUT/report.txt"
tar czf "$OUT/report.tgz" -C "$WORK" reports 2>/dev/null || true
