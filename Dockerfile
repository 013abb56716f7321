# The aevon-deploy worker image: what the `aevon-k8s` work pool's Job runs (deployments/k8s/base-job-template.json
# names it: europe-west1-docker.pkg.dev/aevon-ops/tools/aevon-deploy). Built and pushed by prefect.yaml's GKE
# deployments (docs/scale-out.md). Holds the package, the offline Prisma toolkit, git and the PostgreSQL client tools.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    AEVON_HOME=/app AEVON_STATE_DIR=/var/lib/aevon PREFECT_SERVER_ANALYTICS_ENABLED=false

# git: release checkouts; nodejs/npm: the Prisma CLI; postgresql-client: pg_dump/pg_restore for verified backups;
# tini: signals reach Prefect (a cancelled flow run stops its checks' child processes).
RUN apt-get update \
 && apt-get install -y --no-install-recommends git nodejs npm postgresql-client tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first (a layer that changes only with pyproject.toml), then the code.
COPY pyproject.toml README.md ./
COPY flows/ flows/
COPY tasks/ tasks/
COPY providers/ providers/
COPY deployments/ deployments/
COPY scripts/setup-prisma.sh scripts/setup-prisma.sh
RUN pip install . "prefect-kubernetes>=0.5" \
 && bash scripts/setup-prisma.sh \
 && useradd --uid 10001 --home-dir /app --no-create-home aevon \
 && mkdir -p /var/lib/aevon && chown aevon /var/lib/aevon

USER 10001
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/app/deployments/k8s/entrypoint.sh"]
CMD ["prefect", "flow-run", "execute"]
