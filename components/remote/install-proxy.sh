#!/usr/bin/env bash
# install-proxy.sh: check that the server can take the TLS proxy (ports 80/443, the proxy subnet, DNS), then write its Caddyfile. Safe to re-run.
# Runs on: the server, from components/proxy.py (exposure=tls), before the stack's deploy step. Args: INSTALL_DIR DOMAIN HOST SUBNET CADDYFILE.
# Reads: listening sockets, routes, Docker networks, `getent ahosts DOMAIN`. Writes INSTALL_DIR/Caddyfile (0644, nothing secret). Prints dns=ok|elsewhere|unresolved.
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROJECT=${PROJECT:-glitchtip}
NETWORK="${PROJECT}_proxy"
# stdin: subnets in use, one per word; exit 1 (naming them) when one overlaps argv[1].
OVERLAPS='
import ipaddress, sys
want = ipaddress.ip_network(sys.argv[1])
bad = set()
for word in sys.stdin.read().split():
    try:
        net = ipaddress.ip_network(word, strict=False)
    except ValueError:
        continue
    if net.version == 4 and net.prefixlen > 0 and net.overlaps(want):
        bad.add(str(net))
if bad:
    sys.exit("install-proxy.sh: %s overlaps %s" % (want, ", ".join(sorted(bad))))
'

check_ports() {
  local port
  for port in 80 443; do
    if port_in_use "$port" && ! compose_publishes "$port" "$PROJECT"; then
      die "port $port is already taken by another program (see: ss -ltnp 'sport = :$port'); Caddy needs 80 and 443: stop that program (or move it behind Caddy), or use exposure=tunnel"
    fi
  done
  log "ports 80 and 443 are free or already Caddy's"
}

# check_subnet SUBNET: the proxy network's subnet must not overlap a route or another Docker network.
check_subnet() {
  local subnet=$1 existing others
  if command -v docker >/dev/null 2>&1 && existing=$(docker network inspect --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' "$NETWORK" 2>/dev/null); then
    existing=${existing% }
    [ "$existing" = "$subnet" ] ||
      die "the Docker network $NETWORK has subnet $existing, not proxySubnet $subnet: set exposure=tunnel and pulumi up (that removes it), then come back to tls with the new subnet"
    log "the Docker network $NETWORK already has subnet $subnet"
    return 0
  fi
  others=$(
    { ip -4 route show table all 2>/dev/null || true; } | awk '$1 ~ /^[0-9.]+(\/[0-9]+)?$/ {print $1}'
    if command -v docker >/dev/null 2>&1; then
      { docker network ls -q | xargs -r docker network inspect --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' 2>/dev/null || true; } | tr ' ' '\n'
    fi
  )
  python3 -c "$OVERLAPS" "$subnet" <<<"$others" >&2 ||
    die "proxySubnet $subnet overlaps a network this server already uses (above); choose a free one, e.g. pulumi config set proxySubnet 10.254.86.0/24"
  log "proxySubnet $subnet overlaps no route or Docker network"
}

addresses_of() { { getent ahosts "$1" 2>/dev/null || true; } | awk '{print $1}' | sort -u; }

# check_dns DOMAIN HOST: warn (never fail: DNS may be updated later) unless DOMAIN resolves to this server.
check_dns() {
  local domain=$1 host=$2 resolved mine
  resolved=$(addresses_of "$domain")
  mine=$(
    {
      { ip -o addr show scope global 2>/dev/null || true; } | awk '{sub(/\/.*/, "", $4); print $4}'
      addresses_of "$host" # the address we SSH to: the public one, also behind a cloud's 1:1 NAT
    } | sort -u
  )
  if [ -z "$resolved" ]; then
    log "warning: $domain does not resolve yet; Caddy cannot get its certificate until it does. Fix: create an A (and AAAA) record for $domain pointing at $(echo "$mine" | paste -sd' ' -); Caddy keeps retrying."
    echo "dns=unresolved"
  elif [ -n "$(comm -12 <(echo "$resolved") <(echo "$mine"))" ]; then
    log "$domain resolves to this server ($(echo "$resolved" | paste -sd' ' -))"
    echo "dns=ok"
  else
    log "warning: $domain resolves to $(echo "$resolved" | paste -sd' ' -), not to this server ($(echo "$mine" | paste -sd' ' -)); Caddy cannot get its certificate. Fix: point the A/AAAA records of $domain at this server; Caddy keeps retrying."
    echo "dns=elsewhere"
  fi
}

main() {
  local dir=${1:?usage: install-proxy.sh INSTALL_DIR DOMAIN HOST SUBNET CADDYFILE} domain=${2:?} host=${3:?} subnet=${4:?} caddyfile=${5:?}
  check_ports
  check_subnet "$subnet"
  check_dns "$domain" "$host"
  install -d -m 0750 "$dir"
  printf '%s' "$caddyfile" | write_atomically "$dir/Caddyfile" 0644
}
main "$@"
