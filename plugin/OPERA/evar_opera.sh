#!/usr/bin/env bash
# Extract and evaluate one evar model on the OPERA tasks EVAR's Interspeech 2025 paper used. Run from the OPERA folder
# after OPERA's own processing step has listed each task's clips (see README.md).
#   bash $EVAR/plugin/OPERA/evar_opera.sh CONFIG NAME [EVAR_OPTIONS] [TASKS...]
#   bash $EVAR/plugin/OPERA/evar_opera.sh $EVAR/config/byola.yaml evar_byola "weight_file=/abs/byola.pth"
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG NAME [EVAR_OPTIONS] [TASKS...]" >&2
  exit 2
fi
CONFIG=$1
NAME=$2
OPTIONS=${3:-}
shift $(( $# < 3 ? $# : 3 ))
TASKS=${*:-"copd icbhidisease kauh coughvidcovid coughvidsex coswarasmoker coswarasex"}
HERE=$(cd "$(dirname "$0")" && pwd)
for task in $TASKS; do
  # The last line evar_opera.py prints is the linear_eval command for the features it wrote.
  cmd=$(python "$HERE/evar_opera.py" "$task" "$CONFIG" "$NAME" --options "$OPTIONS" | tail -n 1)
  echo "$cmd"
  $cmd
done
