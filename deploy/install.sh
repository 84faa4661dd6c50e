#!/bin/bash
# Installs the harvest exporter and its deployment kit on this host. Idempotent: a second run
# changes nothing, an upgrade replaces only what changed, and an existing env file (which holds
# the operator's settings and Redis password) is never overwritten.
# Usage: see usage() below, or run deploy/install.sh --help.
set -euo pipefail

SERVICE=quantum-harvest-metrics-exporter
SERVICE_USER=harvest-exporter
ENV_FILE=/etc/quantum/harvest-metrics-exporter.env
DOC_DIR=/usr/local/share/doc/harvest-exporter

usage() {
    cat <<'EOF'
Usage: deploy/install.sh [--binary PATH] [--root DIR] [--runbook-base-url URL] [COMPONENT...]

Components (default: exporter):
  exporter    the binary (/usr/local/bin/harvest-exporter), the systemd unit, the env file
              (/etc/quantum/harvest-metrics-exporter.env, kept if it exists), the README, and
              the system user harvest-exporter
  prometheus  the alerting and recording rules in /etc/prometheus/rules/, and the alerts'
              runbooks in /usr/local/share/doc/harvest-exporter/runbooks/
  grafana     the datasource and dashboard provisioning files in /etc/grafana/provisioning/
              and the dashboards in /var/lib/grafana/dashboards/quantum/
  all         all three

Options:
  --binary PATH  the harvest-exporter binary to install
                 (default: target/release/harvest-exporter in this repository)
  --root DIR     install under DIR instead of /, e.g. to build a package or to test; systemctl
                 is not run. The system user is still created on this host, since the files'
                 owners refer to it.
  --runbook-base-url URL
                 where the alerts' runbook_url annotations point: each becomes
                 URL/<alertname>.md in the installed rules (default: $RUNBOOK_BASE_URL, else
                 the runbooks this script installs,
                 file:///usr/local/share/doc/harvest-exporter/runbooks)
  -h, --help     show this help

Environment:
  RUNBOOK_BASE_URL  as --runbook-base-url (the option wins), e.g. your Git server's view of
                    deploy/runbooks: https://git.example.com/quantum/harvest-exporter/-/blob/main/deploy/runbooks
EOF
}

kit=$(cd "$(dirname "$0")" && pwd)
binary="$kit/../target/release/harvest-exporter"
root=""
runbook_base=${RUNBOOK_BASE_URL:-}
components=()

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=${2:?--binary needs a path}; shift 2 ;;
        --binary=*) binary=${1#--binary=}; shift ;;
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --root=*) root=${1#--root=}; shift ;;
        --runbook-base-url) runbook_base=${2:?--runbook-base-url needs a URL}; shift 2 ;;
        --runbook-base-url=*) runbook_base=${1#--runbook-base-url=}; shift ;;
        -h|--help) usage; exit 0 ;;
        exporter|prometheus|grafana) components+=("$1"); shift ;;
        all) components+=(exporter prometheus grafana); shift ;;
        *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[ ${#components[@]} -gt 0 ] || components=(exporter)
root=${root%/}
runbook_base=${runbook_base%/}
if [ -n "$runbook_base" ]; then
    case "$runbook_base" in
        http://?*|https://?*|file:///*) ;;
        *) echo "install.sh: the runbook base must be an http://, https:// or file:/// URL: $runbook_base" >&2; exit 2 ;;
    esac
    case "$runbook_base" in
        *[[:space:]\|\&\\]*) echo "install.sh: the runbook base contains a space, '|', '&' or a backslash: $runbook_base" >&2; exit 2 ;;
    esac
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (it creates a system user and sets file owners)" >&2
    exit 1
fi

wants() {
    local c
    for c in "${components[@]}"; do [ "$c" = "$1" ] && return 0; done
    return 1
}

# Installs $1 as $2 (a path on the target) with owner root, group $3 and mode $4, and reports
# whether it was new, changed or the same. Owner and mode are set on every run, so a run also
# repairs them.
put() {
    local src=$1 dest=$root$2 group=$3 mode=$4 state
    if [ ! -e "$dest" ]; then
        state=installed
    elif cmp -s "$src" "$dest"; then
        state=unchanged
    else
        state=updated
    fi
    if [ "$state" != unchanged ]; then
        install -D -m "$mode" -o root -g "$group" "$src" "$dest"
        changed=1
    fi
    chown "root:$group" "$dest"
    chmod "$mode" "$dest"
    echo "$state: $2"
}

# Creates a directory the host does not have yet; an existing one keeps its owner and mode,
# which its own package may have chosen.
directory() {
    [ -d "$root$1" ] || install -d -m 0755 -o root -g root "$root$1"
}

# The rules file $1 as shipped, or, with a runbook base, a copy in $tmp whose runbook_url
# annotations point there (the file name, <alertname>.md, is kept).
rules() {
    local src=$1 copy urls moved
    if [ -z "$runbook_base" ]; then
        echo "$src"
        return
    fi
    copy="$tmp/$(basename "$src")"
    sed -E "s|^([[:space:]]*runbook_url: ).*/([A-Za-z0-9]+\.md)\$|\1$runbook_base/\2|" "$src" >"$copy"
    urls=$(grep -c '^[[:space:]]*runbook_url:' "$copy" || true)
    moved=$(grep -c "^[[:space:]]*runbook_url: $runbook_base/[A-Za-z0-9]*\.md\$" "$copy" || true)
    if [ "$urls" != "$moved" ]; then
        echo "install.sh: could not rewrite every runbook_url of $src" >&2
        exit 1
    fi
    echo "$copy"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
changed=0

if wants exporter; then
    if [ ! -x "$binary" ]; then
        echo "install.sh: no executable at $binary: run 'cargo build --release' or pass --binary" >&2
        exit 1
    fi
    "$binary" --version >/dev/null

    if ! getent group "$SERVICE_USER" >/dev/null; then
        groupadd --system "$SERVICE_USER"
        echo "created group: $SERVICE_USER"
    fi
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        useradd --system --gid "$SERVICE_USER" --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --comment "Quantum harvest metrics exporter" "$SERVICE_USER"
        echo "created user: $SERVICE_USER"
    fi

    directory /usr/local/bin
    directory /etc/systemd/system
    directory /etc/quantum
    directory "$DOC_DIR"
    put "$binary" /usr/local/bin/harvest-exporter root 0755
    put "$kit/systemd/$SERVICE.service" "/etc/systemd/system/$SERVICE.service" root 0644
    put "$kit/README.md" "$DOC_DIR/README.md" root 0644

    if [ -e "$root$ENV_FILE" ]; then
        # The operator's settings win; only the owner and mode are brought back in line, which
        # also converts an env file left by the original exporter (owned by its user).
        chown "root:$SERVICE_USER" "$root$ENV_FILE"
        chmod 0640 "$root$ENV_FILE"
        if cmp -s "$kit/config/harvest-metrics-exporter.env" "$root$ENV_FILE"; then
            echo "unchanged: $ENV_FILE"
        else
            echo "kept: $ENV_FILE (local settings; compare with $kit/config/harvest-metrics-exporter.env)"
        fi
    else
        put "$kit/config/harvest-metrics-exporter.env" "$ENV_FILE" "$SERVICE_USER" 0640
    fi
fi
exporter_changed=$changed

if wants prometheus; then
    directory /etc/prometheus/rules
    put "$(rules "$kit/prometheus/alerts.yml")" /etc/prometheus/rules/quantum-harvest-alerts.yml root 0644
    put "$(rules "$kit/prometheus/recording.yml")" /etc/prometheus/rules/quantum-harvest-recording.yml root 0644
    directory "$DOC_DIR/runbooks"
    for runbook in "$kit"/runbooks/*.md; do
        put "$runbook" "$DOC_DIR/runbooks/$(basename "$runbook")" root 0644
    done
fi

if wants grafana; then
    directory /etc/grafana/provisioning/datasources
    directory /etc/grafana/provisioning/dashboards
    directory /var/lib/grafana/dashboards/quantum
    put "$kit/grafana/provisioning/datasources/quantum-prometheus.yml" \
        /etc/grafana/provisioning/datasources/quantum-prometheus.yml root 0644
    put "$kit/grafana/provisioning/dashboards/quantum-harvest.yml" \
        /etc/grafana/provisioning/dashboards/quantum-harvest.yml root 0644
    for dashboard in "$kit"/grafana/*.json; do
        put "$dashboard" "/var/lib/grafana/dashboards/quantum/$(basename "$dashboard")" root 0644
    done
fi

[ -z "$root" ] || exit 0

if wants exporter && [ -d /run/systemd/system ]; then
    if [ "$exporter_changed" -eq 1 ]; then
        systemctl daemon-reload
    fi
    if systemctl is-active --quiet "$SERVICE"; then
        if [ "$exporter_changed" -eq 1 ]; then
            systemctl restart "$SERVICE"
            echo "restarted: $SERVICE"
        fi
    else
        echo "next: review $ENV_FILE, then: systemctl enable --now $SERVICE"
    fi
fi
if wants prometheus; then
    echo "next: list /etc/prometheus/rules/quantum-harvest-*.yml under rule_files and add the"
    echo "      scrape job of $kit/prometheus/scrape-job.yml to prometheus.yml, then reload Prometheus"
fi
if wants grafana; then
    echo "next: restart Grafana once so that it reads the new provisioning files"
fi
