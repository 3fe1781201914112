#!/usr/bin/env bash
# Create .venv (once) with the pinned requirements and spacy-unmask in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt -e .
.venv/bin/python -c "import spacy_unmask, torch, spacy; print('spacy-unmask', spacy_unmask.__version__, '| torch', torch.__version__, '| spacy', spacy.__version__)"
