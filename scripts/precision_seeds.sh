#!/usr/bin/env bash
# Test F1 of the shipped CPU recipe trained under bf16 autocast against the same recipe in
# float32, 3 seeds each: `spacy project run train` with --vars.mixed_precision, then
# scripts/evaluate.py (bf16-trained pipelines as loaded, "auto"; float32-trained ones loaded in
# float32, i.e. the whole float32 path). Resumable: a seed whose metrics file is of the current
# recipe (its "recipe": configs/cpu.cfg's digest, `precision_report.recipe`) is skipped; one of
# an older configs/cpu.cfg is trained again.
#   bash scripts/precision_seeds.sh            -> metrics/precision/{bf16,fp32}_seed{0,1,2}.json
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p metrics/precision
for seed in 0 1 2; do
  for precision in bf16 fp32; do
    out=metrics/precision/${precision}_seed${seed}.json
    recipe=$("$PY" scripts/precision_report.py --recipe)  # each run: the config may change meanwhile
    [ -f "$out" ] && [ "$("$PY" scripts/precision_report.py --recipe-of "$out")" = "$recipe" ] && continue
    if [ "$precision" = bf16 ]; then mixed=true; dtype=auto; else mixed=false; dtype=float32; fi
    tag=_${precision}_seed${seed}
    start=$(date +%s)
    "$PY" -m spacy project run train . --vars.seed "$seed" --vars.tag "$tag" --vars.mixed_precision "$mixed" --force
    train_s=$(( $(date +%s) - start ))
    "$PY" scripts/evaluate.py "training/cpu${tag}/model-best" corpus/test.spacy "$out" --inference-dtype "$dtype"
    "$PY" - "$out" "$train_s" "$seed" "$precision" "$recipe" <<'PY'
import json, sys
path, seconds, seed, precision, recipe = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
record = json.load(open(path))
record.update({"train_wall_s": seconds, "seed": seed, "training_precision": precision, "recipe": recipe})
json.dump(record, open(path, "w"), indent=2)
PY
  done
done
"$PY" scripts/precision_report.py
