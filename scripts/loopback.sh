#!/usr/bin/env bash
# Run a command in a fresh network namespace with only loopback up, so Ray (which
# binds every interface) is reachable from nowhere else. Falls back to a plain run
# with a warning where namespaces are not available (not root, no unshare/ip).
# KDSWEEP_NO_NETNS=1 skips the namespace (e.g. on a cluster node that must be reachable).
set -euo pipefail
if [ "${KDSWEEP_NO_NETNS:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null \
   && command -v ip >/dev/null && unshare -n true 2>/dev/null; then
  exec unshare -n bash -c 'ip link set lo up && exec "$@"' bash "$@"
fi
echo "warning: running without a loopback-only network namespace (needs root, unshare and ip);" \
     "Ray will listen on every interface" >&2
exec "$@"
