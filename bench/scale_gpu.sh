#!/usr/bin/env bash
# The scale bench on a CUDA GPU: LoRA on a bf16 base, QLoRA on a CUDA bitsandbytes NF4 base (bf16 compute),
# full fine-tuning (fp32 weights, bf16 autocast), for every preset the memory calculator says fits in 80 %
# of the free GPU memory, up to phi-3.5-mini. Stand-ins are built on the GPU in bf16 (build/stand-ins/cuda).
# Writes bench/results/scale_cuda-<cores>core.csv/.md; peak = torch.cuda.max_memory_allocated.
#
# PREPARED, NOT YET RUN: no GPU was available when this was written, so no GPU figures exist yet.
# Needs a CUDA build of torch, e.g.  make venv TORCH_INDEX=https://download.pytorch.org/whl/cu128
#
#   bench/scale_gpu.sh                          # all presets
#   bench/scale_gpu.sh --presets smollm2-135m   # extra arguments go to bench/scale.py
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" - <<'PYEOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"no CUDA GPU visible to torch {torch.__version__}: install a CUDA build (TORCH_INDEX in the Makefile)")
import bitsandbytes
free, total = torch.cuda.mem_get_info(0)
print(f"{torch.cuda.get_device_name(0)}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free, "
      f"bf16 {torch.cuda.is_bf16_supported()}; torch {torch.__version__}, bitsandbytes {bitsandbytes.__version__}")
PYEOF
exec "$PY" bench/scale.py --device cuda "$@"
