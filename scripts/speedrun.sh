#!/usr/bin/env bash
# One command from raw text to a released model: scripts/speedrun.sh smoke|cpu|gpu [options]
#
# Runs `notes-rag speedrun --profile PROFILE` from the repository root (further options go to it:
# --out, --kit, --dev, --index, --models), after indexing corpus/ when it has no index yet: the
# dev evaluation retrieves from it. Rerun the same command to resume; then, if the report says
# so, `notes-rag promote runs/speedrun-PROFILE`.
#
# smoke and cpu read ../shared/data; gpu reads data/kit/ inside the checkout (git-ignored), made by
#   mkdir -p data/kit && cp -r ../shared/data/pretrain ../shared/data/sft ../shared/eval data/kit/
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:?usage: scripts/speedrun.sh smoke|cpu|gpu [notes-rag speedrun options]}
shift
[ -d corpus/.notes-rag ] || notes-rag index corpus/
exec notes-rag speedrun --profile "$profile" "$@"
