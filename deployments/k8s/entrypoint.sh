#!/bin/sh
# Entrypoint of the aevon-deploy worker image (Dockerfile): the Kubernetes worker's Job runs it with the command it
# gives the container (`prefect flow-run execute`, PREFECT__FLOW_RUN_ID in the environment); no command = that one.
# It refuses to start without the Prefect API URL, runs from AEVON_HOME (where the deployment's pull step points)
# and makes sure the state directory exists. Runs the same from a plain venv: PATH must hold its `prefect`.
set -eu
if [ -z "${PREFECT_API_URL:-}" ]; then
  echo "aevon-deploy entrypoint: PREFECT_API_URL is not set (the Prefect server's API, e.g. http://prefect-server.aevon-deploy:4200/api)" >&2
  exit 64
fi
home="${AEVON_HOME:-/app}"
if [ ! -d "$home" ]; then
  echo "aevon-deploy entrypoint: AEVON_HOME $home is not a directory" >&2
  exit 64
fi
mkdir -p "${AEVON_STATE_DIR:-/var/lib/aevon}"
cd "$home"
if [ "$#" -eq 0 ]; then
  set -- prefect flow-run execute
fi
exec "$@"
