#!/usr/bin/env bash
# One prepared run on a borrowed GPU machine: the CUDA tests, then the `paper` profile of
# each chapter named, under its own time limit. Such a machine has PyTorch but not the
# book's toolchain, and gets a copy of the tree without .git, so the chapters run through
# scripts/run_chapter.py and the commit is passed in by name.
#
# Before the call, from a clean checkout (the data folder is git-ignored):
#   mkdir -p .device-data && cp "$FORGETKIT_DATA"/{MANIFEST.json,mnist.npz} .device-data/
#   (add cifar10_jpeg_15k.npz for eternal_sunshine; olivetti_faces.npz for forsaken)
# On the machine, with .device-data carried along:
#   bash scripts/device_check.sh "$(git rev-parse --short HEAD)" lcodec:420 eternal_sunshine:300
# Everything comes back under $OUT: device.txt, test_gpu.log, and per chapter NAME.log and
# the book/results/NAME.json it stored (at most 8 files: three chapters per run).
set -uo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 COMMIT [CHAPTER:SECONDS ...]" >&2
  exit 2
fi
commit=$1
shift
out=${OUT:-_build/device}
device=${DEVICE:-cuda}  # DEVICE=cpu: a dry run of this script on any machine
mkdir -p "$out"
export FORGETKIT_GIT_COMMIT=$commit FORGETKIT_DATA=$PWD/.device-data FORGETKIT_OFFLINE=1 \
  PYTHONUNBUFFERED=1 PYTHONPATH=$PWD MPLBACKEND=Agg
python=$(command -v python3 || command -v python)
{
  nvidia-smi -L
  "$python" -c "import torch; c = torch.cuda.is_available()
print('torch', torch.__version__, torch.cuda.get_device_name(0) if c else 'no CUDA')"
  echo "commit $commit"
} >"$out/device.txt" 2>&1
timeout 240 "$python" -m pytest -q -p no:cacheprovider tests/test_gpu.py >"$out/test_gpu.log" 2>&1
echo "test_gpu: exit $?"
tail -n 1 "$out/test_gpu.log"
for item in "$@"; do
  name=${item%%:*}
  limit=${item#*:}
  marker=$(mktemp)
  timeout "$limit" "$python" scripts/run_chapter.py "$name" --profile paper --device "$device" \
    >"$out/$name.log" 2>&1
  echo "$name: exit $? ($(tail -n 1 "$out/$name.log"))"
  result=book/results/$name.json
  if [ -f "$result" ] && [ "$result" -nt "$marker" ]; then
    cp "$result" "$out/"
  fi
  rm -f "$marker"
done
