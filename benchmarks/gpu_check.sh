#!/usr/bin/env bash
# One prepared check of advcli's CUDA paths on a GPU machine (H100/H200), in under 8 minutes:
# train and robust-train (bf16, device-resident data, large batches), eval (BIM + APGD-CE, and auto),
# export to ONNX and eval of the file on onnxruntime's CUDA provider, torchrun with NCCL on the
# GPUs present (training with --sync-bn and a sharded evaluation against one process; with one GPU,
# advcli's collectives and DDP on a one-process NCCL group), and the cost of keyed random starts on
# the GPU. Prints a table; writes gpu_check.json (and the logs) under $OUT when it is set.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run  # the same steps, tiny and on the CPU (gloo), anywhere
#
# The machine needs no network: the script runs the tree in place (PYTHONPATH) with python3 (or
# $PYTHON) and the torch installed there, and skips, with a line saying why, any step whose package
# is missing (onnxruntime-gpu, onnx, ...). Data are generated (digits drawn by advcli).
set -u -o pipefail

DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/advcli-gpu-check.XXXXXX")
RESULTS=$WORK/results.tsv
BUDGET_S=420  # steps not started by then are skipped, so that the whole run stays under 8 minutes
STARTED=$(date +%s)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
: > "$RESULTS"

if [ "$DRY" = 1 ]; then
  DEVICE=cpu; PRECISION=fp32; ARCH=mnist-small; TRAIN=512; TEST=128; BATCH=64; EPOCHS=1
  SAMPLES=64; EVAL_BATCH=64; QUERIES=20; NOISE_BATCH=64; export OMP_NUM_THREADS=1
else
  DEVICE=cuda; PRECISION=bf16; ARCH=preact-resnet18; TRAIN=20000; TEST=2000; BATCH=512; EPOCHS=2
  SAMPLES=2000; EVAL_BATCH=1000; QUERIES=100; NOISE_BATCH=512
fi

# The last JSON document a step printed (indented, or on one line), amid progress and warnings.
cat > "$WORK/last_json.py" <<'EOF'
import json
def last_json(path):
    lines = open(path, errors="replace").read().splitlines()
    for start in range(len(lines) - 1, -1, -1):
        if lines[start].startswith("{"):
            for end in range(len(lines), start, -1):
                try:
                    return json.loads("\n".join(lines[start:end]))
                except ValueError:
                    continue
    raise ValueError(f"no JSON in {path}")
EOF

# record NAME STATUS SECONDS DETAIL
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RESULTS"; }

elapsed() { echo $(( $(date +%s) - STARTED )); }

# run NAME TIMEOUT_S COMMAND...: the command's output goes to $WORK/NAME.log; sets STATUS and SECONDS_TAKEN
run() {
  local name=$1 limit=$2; shift 2
  if [ "$(elapsed)" -ge "$BUDGET_S" ]; then
    STATUS="skip: the time budget ($BUDGET_S s) is spent"; SECONDS_TAKEN=0; return 1
  fi
  local begin code took
  begin=$(date +%s%N)
  timeout --kill-after 10 "$limit" "$@" > "$WORK/$name.log" 2>&1
  code=$?
  took=$(( ($(date +%s%N) - begin) / 100000000 ))
  SECONDS_TAKEN="$((took / 10)).$((took % 10))"
  if [ "$code" = 0 ]; then STATUS=ok
  elif [ "$code" = 124 ] || [ "$code" = 137 ]; then STATUS="fail: over ${limit} s"
  else STATUS="fail: exit $code ($(grep -v '^\s*$' "$WORK/$name.log" | grep -i 'error' | tail -1 | cut -c1-120))"
  fi
  [ "$STATUS" = ok ]
}

# figure NAME PYTHON_EXPRESSION: evaluates the expression with `j` = the JSON the step printed last
figure() {
  PYTHONPATH="$WORK:$PYTHONPATH" "$PY" - "$WORK/$1.log" "$2" <<'EOF' 2>/dev/null || echo "(no JSON output)"
import sys
from last_json import last_json
j = last_json(sys.argv[1])
print(eval(sys.argv[2]))
EOF
}

# step NAME TIMEOUT_S DETAIL_EXPRESSION COMMAND...: run, then record with the figure when it worked
step() {
  local name=$1 limit=$2 detail=$3; shift 3
  if run "$name" "$limit" "$@"; then
    record "$name" ok "$SECONDS_TAKEN" "$(figure "$name" "$detail")"
  else
    record "$name" "$STATUS" "$SECONDS_TAKEN" ""
  fi
}

has() { "$PY" -c "import $1" > /dev/null 2>&1; }

# ---- environment ---------------------------------------------------------------------------------
if ! has torch; then
  record environment "fail: $PY has no torch" 0 ""
  NO_TORCH=1
else
  NO_TORCH=0
  run environment 120 "$PY" - <<'EOF'
import importlib, json, platform, torch
packages = {}
for name in ("typer", "rich", "safetensors", "numpy", "matplotlib", "PIL", "onnx", "onnxruntime"):
    try:
        packages[name] = getattr(importlib.import_module(name), "__version__", "present")
    except Exception as error:  # noqa: BLE001 - any failure means the package cannot be used
        packages[name] = None
providers = None
if packages["onnxruntime"]:
    import onnxruntime
    providers = onnxruntime.get_available_providers()
gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                  "gpus": gpus, "nccl": torch.distributed.is_nccl_available(), "packages": packages,
                  "onnxruntime_providers": providers}))
EOF
  record environment "$STATUS" "$SECONDS_TAKEN" "$(figure environment "f\"torch {j['torch']}, CUDA {j['cuda']}, {len(j['gpus'])} GPU(s) {', '.join(sorted(set(j['gpus'])))}\"")"
fi

GPUS=0
if [ "$NO_TORCH" = 0 ]; then
  GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)" 2>/dev/null || echo 0)
fi
CLI_OK=1
for package in typer rich safetensors numpy matplotlib PIL; do
  if ! has "$package"; then CLI_OK=0; MISSING_CLI=$package; break; fi
done
if [ "$NO_TORCH" = 1 ]; then CLI_OK=0; MISSING_CLI=torch; fi
if [ "$DRY" = 0 ] && [ "$GPUS" = 0 ] && [ "$NO_TORCH" = 0 ]; then
  record gpu "fail: torch sees no CUDA device (run with --dry-run for the CPU versions)" 0 ""
  CLI_OK=0; MISSING_CLI="a CUDA device"
fi

skip_all() {
  for name in data train robust-train eval eval-auto export eval-onnx torchrun-train torchrun-eval; do
    record "$name" "skip: $1" 0 ""
  done
}

if [ "$CLI_OK" = 0 ]; then
  skip_all "needs ${MISSING_CLI:-torch}"
else
# ---- data: digits drawn by advcli, gray 28x28 and tinted 3x32x32 ----------------------------------
step data 120 "f\"{j['train']} train, {j['test']} test images per set\"" "$PY" - "$WORK" "$TRAIN" "$TEST" <<'EOF'
import json, sys
import numpy as np
from advcli.data import generate_digits
work, train, test = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
x, y, xt, yt = generate_digits(n_train=train, n_test=test, seed=1)
np.savez(f"{work}/gray.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
rng = np.random.default_rng(2)
def tinted(images):
    padded = np.pad(images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0), ((0, 0), (2, 2), (2, 2)))
    tint = rng.uniform(0.4, 1.0, size=(len(images), 3, 1, 1)).astype(np.float32)
    return np.clip(padded[:, None] * tint, 0, 1)
np.savez(f"{work}/color.npz", x_train=tinted(x), y_train=y, x_test=tinted(xt), y_test=yt)
print(json.dumps({"train": len(x), "test": len(xt)}))
EOF

COMMON=(--device "$DEVICE" --precision "$PRECISION" --json)
step train 180 "f\"seed-cnn: clean {j['clean_test_accuracy']:.3f}, {$EPOCHS * $TRAIN / j['train_seconds']:.0f} img/s, {j['precision']} on {j['device']}\"" \
  "$PY" -m advcli train --data "npz:$WORK/gray.npz" --arch seed-cnn --epochs "$EPOCHS" --batch-size "$BATCH" \
  --out "$WORK/runs/standard" "${COMMON[@]}"

step robust-train 240 "f\"$ARCH fgsm-rs 8/255: clean {j['clean_test_accuracy']:.3f}, val robust {j['val_robust_accuracy']:.3f}, {$EPOCHS * $TRAIN * 0.9 / j['train_seconds']:.0f} img/s, {j['precision']}\"" \
  "$PY" -m advcli robust-train --data "npz:$WORK/color.npz" --arch "$ARCH" --eps 8/255 --epochs "$EPOCHS" \
  --batch-size "$BATCH" --lr 0.05 --out "$WORK/runs/robust" "${COMMON[@]}"

EVAL=(--model "$WORK/runs/robust" --eps 8/255 --samples "$SAMPLES" --batch-size "$EVAL_BATCH" "${COMMON[@]}")
step eval 180 "f\"bim+apgd-ce: clean {j['clean_accuracy']:.3f}, robust {j['robust_accuracy']:.3f}, {j['samples']} in {j['seconds']:.1f} s, {j['precision']} on {j['device']}\"" \
  "$PY" -m advcli eval --attack bim --attack apgd-ce --per-class "${EVAL[@]}"

step eval-auto 180 "f\"auto (square {$QUERIES} queries): robust {j['robust_accuracy']:.3f}, {j['seconds']:.1f} s\"" \
  "$PY" -m advcli eval --attack auto --queries "$QUERIES" "${EVAL[@]}"

if ! has onnx || ! has onnxruntime; then
  record export "skip: needs onnx and onnxruntime" 0 ""
  record eval-onnx "skip: needs onnx and onnxruntime" 0 ""
else
  step export 180 "f\"parity on {j['parity_samples']} samples: max |diff| {j['max_abs_diff']:.1e}\"" \
    "$PY" -m advcli export --model "$WORK/runs/robust" --out "$WORK/robust.onnx" --json
  PROVIDER=$([ "$DEVICE" = cuda ] && echo CUDAExecutionProvider || echo CPUExecutionProvider)
  if ! "$PY" -c "import onnxruntime, sys; sys.exit('$PROVIDER' not in onnxruntime.get_available_providers())"; then
    record eval-onnx "skip: onnxruntime has no $PROVIDER (install onnxruntime-gpu)" 0 ""
  else
    step eval-onnx 180 "f\"square on the file: robust {j['robust_accuracy']:.3f}; ran on {j['execution_providers'][0]}\" + ('' if j['execution_providers'][0] == '$PROVIDER' else ' (NOT $PROVIDER)')" \
      "$PY" -m advcli eval --model "$WORK/robust.onnx" --attack square --queries "$QUERIES" --eps 8/255 \
      --samples 256 --batch-size 256 --device "$DEVICE" --json
  fi
fi

# ---- torchrun: NCCL on the GPUs present (gloo on the CPU for the dry run) -------------------------
PROCESSES=$([ "$DRY" = 1 ] && echo 2 || echo "$GPUS")
if [ "$PROCESSES" -lt 2 ]; then
  record torchrun-train "skip: one GPU; an NCCL job needs two (see the nccl step)" 0 ""
  record torchrun-eval "skip: one GPU; an NCCL job needs two (see the nccl step)" 0 ""
else
  SYNC=$([ "$DRY" = 1 ] && echo "" || echo --sync-bn)
  TORCHRUN=("$PY" -m torch.distributed.run --standalone --nproc-per-node "$PROCESSES" -m advcli)
  step torchrun-train 300 "f\"{$PROCESSES} processes $SYNC: clean {j['clean_test_accuracy']:.3f}, {$EPOCHS * $TRAIN * 0.9 / j['train_seconds']:.0f} img/s\"" \
    "${TORCHRUN[@]}" robust-train --data "npz:$WORK/color.npz" --arch "$ARCH" --eps 8/255 --epochs "$EPOCHS" \
    --batch-size "$BATCH" --lr 0.05 --out "$WORK/runs/robust-ddp" $SYNC "${COMMON[@]}"
  if run torchrun-eval 240 "${TORCHRUN[@]}" eval --attack bim --per-class "${EVAL[@]}" && SHARDED_S=$SECONDS_TAKEN && \
     run eval-bim 180 "$PY" -m advcli eval --attack bim --per-class "${EVAL[@]}"; then
    record torchrun-eval ok "$SHARDED_S" "$(PYTHONPATH="$WORK:$PYTHONPATH" "$PY" - "$WORK/torchrun-eval.log" "$WORK/eval-bim.log" <<'EOF'
import sys
from last_json import last_json
sharded, alone = (last_json(path) for path in sys.argv[1:])
same = sharded["robust_accuracy"] == alone["robust_accuracy"] and sharded["per_class"] == alone["per_class"]
print(f"world size {sharded['world_size']} ({sharded['distributed_backend']}): robust {sharded['robust_accuracy']:.4f}"
      f" in {sharded['seconds']:.1f} s; one process {alone['robust_accuracy']:.4f} in {alone['seconds']:.1f} s"
      + ("; same figures" if same else "; FIGURES DIFFER"))
EOF
)"
  else
    record torchrun-eval "$STATUS" "$SECONDS_TAKEN" ""
  fi
fi

fi

# ---- what needs torch alone: NCCL through advcli's collectives and DDP, keyed noise ---------------
if [ "$NO_TORCH" = 1 ]; then
  record nccl "skip: needs torch" 0 ""
  record keyed-noise "skip: needs torch" 0 ""
else
if [ "$DEVICE" != cuda ] || [ "$GPUS" = 0 ]; then
  record nccl "skip: no CUDA$([ "$DRY" = 1 ] && echo ' (dry run)')" 0 ""
else
  step nccl 120 "f\"agree/gather/broadcast ok; DDP bf16 step {j['step_ms']:.1f} ms; all-reduce of {j['megabytes']:.0f} MB in {j['allreduce_ms']:.2f} ms\"" \
    "$PY" - <<'EOF'
import json, socket, time
import torch
import torch.distributed as dist
import torch.nn.functional as F
from advcli.models import build_model
from advcli.runtime.distributed import (DistributedContext, agree, broadcast_buffers, gather_samples,
                                        sum_over_ranks, wrap_model)
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
device = torch.device("cuda", 0)
torch.cuda.set_device(device)
dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1, device_id=device)
context = DistributedContext(rank=0, local_rank=0, world_size=1, backend="nccl", device=device)
assert agree(True, context) and sum_over_ranks(3, context) == 3
assert torch.equal(gather_samples(torch.arange(5, device=device), context, to_all=True), torch.arange(5, device=device))
model = build_model("preact-resnet18", (3, 32, 32), 10).to(device)
broadcast_buffers(model, context)
wrapped = wrap_model(model, context, sync_buffers=False)
optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.01)
x, y = torch.rand(512, 3, 32, 32, device=device), torch.randint(0, 10, (512,), device=device)
def step():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", torch.bfloat16):
        loss = F.cross_entropy(wrapped(x).float(), y)
    loss.backward()
    optimizer.step()
for _ in range(3):
    step()
torch.cuda.synchronize(); begin = time.perf_counter(); step(); torch.cuda.synchronize()
step_ms = 1000 * (time.perf_counter() - begin)
flat = torch.zeros(sum(p.numel() for p in model.parameters()), device=device)
dist.all_reduce(flat); torch.cuda.synchronize()
begin = time.perf_counter(); dist.all_reduce(flat); torch.cuda.synchronize()
print(json.dumps({"step_ms": step_ms, "allreduce_ms": 1000 * (time.perf_counter() - begin),
                  "megabytes": flat.numel() * 4 / 2**20}))
dist.destroy_process_group()
EOF
fi

step keyed-noise 120 "f\"{j['batch']}x3x32x32 on {j['device']}: keyed {j['keyed_ms']:.2f} ms, torch.rand {j['plain_ms']:.3f} ms\"" \
  "$PY" - "$([ "$GPUS" -gt 0 ] && [ "$DRY" = 0 ] && echo cuda || echo cpu)" "$NOISE_BATCH" <<'EOF'
import json, sys, time
import torch
from advcli.runtime.sharding import sample_uniform
device, batch = torch.device(sys.argv[1]), int(sys.argv[2])
indices = torch.arange(batch, device=device)
def timed(draw):
    draw()
    if device.type == "cuda":
        torch.cuda.synchronize()
    begin = time.perf_counter()
    for _ in range(5):
        draw()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - begin) / 5
keyed = timed(lambda: sample_uniform(indices, (3, 32, 32), seed=0, step=1))
plain = timed(lambda: torch.rand(batch, 3, 32, 32, device=device))
print(json.dumps({"batch": batch, "device": str(device), "keyed_ms": keyed, "plain_ms": plain}))
EOF
fi

# ---- the table, and the JSON under $OUT ---------------------------------------------------------
"$PY" - "$RESULTS" "$DRY" "$(elapsed)" "${OUT:-}" "$WORK" <<'EOF'
import json, os, shutil, sys
results, dry, total, out, work = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), sys.argv[4], sys.argv[5]
rows = [line.rstrip("\n").split("\t") for line in open(results) if line.strip()]
width = max(len(row[0]) for row in rows)
print(f"\nadvcli GPU check{' (dry run: tiny, on the CPU)' if dry else ''}: {total} s")
for name, status, seconds, detail in rows:
    print(f"{name:<{width}}  {float(seconds):>6.1f} s  {status}" + (f": {detail}" if detail else ""))
failed = [row[0] for row in rows if row[1].startswith("fail")]
print(f"{len(rows) - len(failed)} of {len(rows)} steps ok or skipped" + (f"; failed: {', '.join(failed)}" if failed else ""))
if out:
    os.makedirs(out, exist_ok=True)
    payload = {"dry_run": dry, "seconds": total,
               "steps": [{"name": n, "status": s, "seconds": float(t), "detail": d} for n, s, t, d in rows]}
    with open(os.path.join(out, "gpu_check.json"), "w") as handle:
        json.dump(payload, handle, indent=2)
    logs = os.path.join(out, "gpu_check_logs")
    os.makedirs(logs, exist_ok=True)
    for name in os.listdir(work):
        if name.endswith(".log"):
            shutil.copy(os.path.join(work, name), logs)
    print(f"wrote {os.path.join(out, 'gpu_check.json')}")
sys.exit(1 if failed else 0)
EOF
