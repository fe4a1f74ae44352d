#!/bin/sh
# A leaderboard campaign from a fixed commit (issue 34): the code runs from a separate git worktree, so edits and
# commits in this checkout do not change what a running campaign computes, and every cell's small result file is
# written into THIS checkout's results folder (docs/results/<name>), to be committed from here as it grows.
#   scripts/campaign.sh PRESET [COMMIT]      e.g. scripts/campaign.sh cpu        (COMMIT: default HEAD; given for an
#                                            existing worktree, it moves the campaign to that commit)
#   LIMIT=SECONDS  stop cleanly after the set or cell that crosses it (exit 3; run it again to continue)
#   DATA=DIR       CIFAR in torchvision's layout (python ../shared/data/cifar.py DIR); default ./data
#   WORK=DIR       where the worktree, the sets and the log live (default ~/.cache/ssdd/campaign)
#   SETS=DIR       where sets are made or reused (default: $WORK/sets-<slug of the preset's sets_dir> when the preset
#                  reads another leaderboard's sets, so that the application presets share one folder; else
#                  $WORK/out-PRESET)
#   ONLY=ROWS      only these rows (and the baselines), e.g. ONLY="[krr_st x1,krr_st x3,krr_st x10]"
#   SEEDS=LIST     only these set seeds, e.g. SEEDS="[3,4]": the part of a campaign that one sitting on one machine
#                  can finish (a set seed's cells must come from one machine; the next sitting adds the next seeds)
# A second call with the same PRESET reuses the worktree (its commit is printed) and continues: finished sets and
# cells are reused; a set seed begun on another kind of machine is refused (finish it there, or git rm its cells).
set -e
preset=${1:?usage: scripts/campaign.sh PRESET [COMMIT]}
here=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$HOME/.cache/ssdd/campaign}
DATA=$(cd "${DATA:-$here/data}" && pwd)
tree="$WORK/tree-$preset"
mkdir -p "$WORK/logs"
if [ ! -d "$tree" ]; then
    git -C "$here" worktree add --detach "$tree" "${2:-HEAD}"
elif [ -n "$2" ]; then      # move the campaign to another fixed commit (its finished units are reused, not redone)
    git -C "$tree" checkout -q --detach "$2"
fi
# the data is reached as ./data inside the worktree on every machine: a source's identity (its sets' folder) holds
# its root, so an absolute path would make another machine's campaign a different source
[ -e "$tree/data" ] || ln -s "$DATA" "$tree/data"
# the preset as resolved (its base included): its results folder, and the slug of its sets_dir when it reads another
# leaderboard's sets (then every preset naming the same sets_dir shares one sets folder)
resolved=$(cd "$tree" && PYTHONPATH="$tree" "$here/.venv/bin/python" -c "
import sys, re
from distill.config import load_config
from distill.leaderboard import LeaderboardConfig
c = load_config(LeaderboardConfig, sys.argv[1])
print(c.results, re.sub('[^a-z0-9]+', '-', c.sets_dir.lower()).strip('-') or '-')" "configs/leaderboard/$preset.yaml") || exit 2
results=${resolved% *}
shared=${resolved##* }
[ -n "$results" ] && [ "$results" != "$resolved" ] || { echo "configs/leaderboard/$preset.yaml has no results: folder"; exit 2; }
if [ -z "$SETS" ]; then
    SETS="$WORK/out-$preset"
    [ "$shared" != "-" ] && SETS="$WORK/sets-$shared"
fi
echo "campaign $preset at commit $(git -C "$tree" rev-parse --short HEAD) -> $here/$results (sets: $SETS; log: $WORK/logs/$preset.log)"
cd "$tree"
PYTHONPATH="$tree" SSDD_PROGRESS=0 exec "$here/.venv/bin/python" -m distill leaderboard \
    -c "configs/leaderboard/$preset.yaml" "sources.0.data.root=data" "targets.0.root=data" \
    "output=$WORK/out-$preset" "sets_dir=$SETS" "results=$here/$results" \
    ${ONLY:+"only_rows=$ONLY"} ${SEEDS:+"only_seeds=$SEEDS"} ${LIMIT:+--time-limit "$LIMIT"} >> "$WORK/logs/$preset.log" 2>&1
