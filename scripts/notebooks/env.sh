# Environment for running the GoNB notebooks; source it (bash):
#   source scripts/notebooks/env.sh
# Puts .tools/bin (gonb, gopls, goimports) first on PATH and points Jupyter at the
# project-local data dir where scripts/notebooks/setup.sh registered the GoNB kernel.
# Also usable interactively, e.g. with a JupyterLab you installed yourself:
#   source scripts/notebooks/env.sh && jupyter lab notebooks/
nb_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
nb_tools="${ENFLOW_TOOLS:-$nb_repo/.tools}"
export PATH="$nb_tools/bin:$PATH"
export JUPYTER_DATA_DIR="$nb_tools/jupyter"
export JUPYTER_CONFIG_DIR="$nb_tools/jupyter/config"   # ignore a user's ~/.jupyter config
export JUPYTER_PLATFORM_DIRS=0
export GOWORK=off
# The notebooks find the shared data as internal/shared does: $ENFLOW_SHARED (made absolute
# here: the kernel runs in notebooks/), else the first "shared" folder holding data/README.md
# beside the notebook's directory or one of its parents.
if [ -n "${ENFLOW_SHARED:-}" ]; then
  case "$ENFLOW_SHARED" in /*) ;; *) ENFLOW_SHARED="$PWD/$ENFLOW_SHARED" ;; esac
  export ENFLOW_SHARED
fi
# ENFLOW_OUT (default <repo>/out, made absolute) is where executed notebooks and their HTML go
# (<out>/notebooks) and where explore_training.ipynb looks for the ETL's Parquet files (<out>/data).
ENFLOW_OUT="${ENFLOW_OUT:-$nb_repo/out}"
case "$ENFLOW_OUT" in /*) ;; *) ENFLOW_OUT="$PWD/$ENFLOW_OUT" ;; esac
export ENFLOW_OUT
nb_out="$ENFLOW_OUT/notebooks"
nb_scripts="$nb_repo/scripts/notebooks"

# nb_require_tools: fail with a hint when setup.sh has not been run.
nb_require_tools() {
  local t
  for t in gonb gopls goimports; do
    [ -x "$nb_tools/bin/$t" ] || { echo "missing $nb_tools/bin/$t: run scripts/notebooks/setup.sh (just notebooks-setup)" >&2; return 1; }
  done
  [ -f "$JUPYTER_DATA_DIR/kernels/gonb/kernel.json" ] || { echo "GoNB kernel not registered: run scripts/notebooks/setup.sh" >&2; return 1; }
  [ -x /usr/bin/jupyter ] || { echo "jupyter not installed: run scripts/notebooks/setup.sh" >&2; return 1; }
}

# nb_execute NOTEBOOK OUTDIR: execute NOTEBOOK with the GoNB kernel into OUTDIR/<name>.ipynb.
# Errors in cells do not stop the execution (--allow-errors): check.py judges the result.
# The kernel runs in the notebook's own directory ($GONB_DIR).
nb_execute() {
  /usr/bin/jupyter nbconvert --to notebook --execute --allow-errors \
    --ExecutePreprocessor.timeout=600 --ExecutePreprocessor.startup_timeout=120 \
    --output-dir "$2" "$1" </dev/null
}

# nb_html EXECUTED_NOTEBOOK: export it to HTML beside it (Go syntax highlighting).
nb_html() {
  /usr/bin/python3 "$nb_scripts/strip.py" --lexer "$1"
  /usr/bin/jupyter nbconvert --to html --output-dir "$(dirname "$1")" "$1" </dev/null
}
