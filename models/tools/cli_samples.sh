#!/usr/bin/env bash
# Ten sample generations of a model by the C engine (build/edgeinf), fixed prompts and seeds, as markdown on stdout.
#   models/tools/cli_samples.sh [MODEL]     (default: the shipped default model)
set -euo pipefail
cd "$(dirname "$0")/../.."
M=${1:-models/edgeinf-default-q8_0.gguf}
prompts=("Once upon a time" "The old man looked at the sea and" "In the beginning" "She opened the door and"
         "The king said to his servants" "It was a cold winter night" "My favourite book is"
         "The little dog ran" "When the sun went down," "He wrote a letter to his mother")
echo "Samples from \`$M\` by the C engine: \`build/edgeinf generate -m $M -p PROMPT -n 60 --temp 0.8 --top-k 40 --top-p 0.95 --seed SEED\`; the prompt is in bold."
echo
for i in "${!prompts[@]}"; do
  seed=$((i + 1))
  out=$(build/edgeinf generate -m "$M" -p "${prompts[$i]}" -n 60 --temp 0.8 --top-k 40 --top-p 0.95 --seed $seed 2>/dev/null | tr '\n' ' ')
  echo "- seed $seed: **${prompts[$i]}**$out"
done
