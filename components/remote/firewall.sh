#!/usr/bin/env bash
# firewall.sh: ufw allows SSH (and 80/443 with exposure=tls), enabled only if it was off and only once SSH is allowed; `remove` takes back the rules it added. Safe to re-run.
# Runs on: the server, from components/proxy.py (firewall=true). Args: apply SSH_PORT [PORT...] | remove.
# Touches only ufw rules commented 'glitchtip-migration': never `ufw reset`, never the default policies, never another rule. STATE_DIR: ufw-enabled (this step turned ufw on), ufw-ssh-port.
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TAG=glitchtip-migration
STATE_DIR=${STATE_DIR:-/var/lib/glitchtip-migration}
ENABLED_MARK="$STATE_DIR/ufw-enabled"
SSH_PORT_FILE="$STATE_DIR/ufw-ssh-port"

ufw_active() { ufw status </dev/null 2>/dev/null | grep -q '^Status: active'; }

# added_rules: every user rule, as `ufw show added` gives it ("allow 22/tcp comment 'x'"), active or not.
added_rules() { ufw show added </dev/null | sed -n 's/^ufw //p'; }

# ours: the rules this step added, without their comment ("allow 22/tcp").
ours() { added_rules | sed -n "s/ comment '$TAG'\$//p"; }

# others: every other rule (comment stripped).
others() { added_rules | { grep -v " comment '$TAG'\$" || true; } | sed "s/ comment '.*'\$//"; }

# change [delete] RULE: ufw with the rule's words and our comment.
change() {
  local words
  if [ "$1" = delete ]; then
    read -ra words <<<"$2"
    ufw delete "${words[@]}" comment "$TAG" </dev/null >&2
  else
    read -ra words <<<"$1"
    ufw "${words[@]}" comment "$TAG" </dev/null >&2
  fi
}

ensure_ufw() {
  command -v ufw >/dev/null 2>&1 && return 0
  log "ufw is not installed: installing it (it stays off until SSH is allowed)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ufw </dev/null >&2 ||
    die "could not install ufw: install it by hand (apt-get install ufw) or set firewall=false"
}

# allow RULE: add it with our comment, unless it is there already. ufw re-tags an
# identical rule that has another comment, which would make it ours to delete later:
# an equivalent rule of someone else's is therefore left alone (and stays theirs).
allow() {
  local rule=$1
  if ours | grep -qxF "$rule"; then
    log "ufw: '$rule' is already there (ours), skipped"
  elif others | grep -qxF "$rule"; then
    log "ufw: '$rule' is already there (not ours), left alone"
  else
    change "$rule"
    log "ufw: '$rule' added"
  fi
}

apply() {
  local ssh_port=${1:?usage: firewall.sh apply SSH_PORT [PORT...]} port rule want=()
  for port in "$@"; do
    [[ $port =~ ^[0-9]+$ ]] || die "port '$port' is not a number"
    want+=("allow $port/tcp")
  done
  ensure_ufw
  mkdir -p "$STATE_DIR"
  printf '%s\n' "$ssh_port" >"$SSH_PORT_FILE"
  for rule in "${want[@]}"; do allow "$rule"; done # SSH first
  while read -r rule; do # ours, but no longer wanted (e.g. exposure back to tunnel, another sshPort)
    [ -n "$rule" ] || continue
    if ! printf '%s\n' "${want[@]}" | grep -qxF "$rule"; then
      change delete "$rule"
      log "ufw: '$rule' (ours) removed, no longer needed"
    fi
  done < <(ours)
  if ufw_active; then
    log "ufw is active, left as it is"
  else
    # Never lock the operator out: enable only once SSH is allowed, by our rule or another.
    { ours; others; } | grep -qxF "allow $ssh_port/tcp" || die "SSH (port $ssh_port) is not allowed in ufw: refusing to enable it"
    touch "$ENABLED_MARK"
    ufw --force enable </dev/null >&2
    log "ufw was inactive: enabled, with SSH on $ssh_port allowed"
  fi
  echo "rules=$(ours | paste -sd, -)"
}

remove() {
  local rule ssh_port=""
  [ ! -f "$SSH_PORT_FILE" ] || ssh_port=$(cat "$SSH_PORT_FILE")
  if ! command -v ufw >/dev/null 2>&1; then
    log "ufw is not installed: nothing to remove"
    rm -f "$ENABLED_MARK" "$SSH_PORT_FILE"
    return 0
  fi
  if [ -z "$(ours)" ]; then
    log "no ufw rule of ours, nothing removed"
  elif [ -f "$ENABLED_MARK" ] && ufw_active && [ -n "$(others)" ]; then
    # We turned ufw on and others added rules since: turning it off would drop their
    # protection, deleting our SSH rule could lock everyone out. Keep SSH, say so.
    while read -r rule; do
      [ "$rule" != "allow $ssh_port/tcp" ] || continue
      change delete "$rule"
      log "ufw: '$rule' (ours) removed"
    done < <(ours)
    log "warning: ufw was enabled by this stack and now holds other rules too: left on, with our SSH rule kept so nobody is locked out; remove it by hand once SSH is allowed otherwise (ufw delete allow $ssh_port/tcp)"
    echo "ufw=active"
    return 0
  else
    if [ -f "$ENABLED_MARK" ] && ufw_active; then
      ufw --force disable </dev/null >&2 # as it was before us; before our SSH rule goes
      log "ufw disabled again (this stack had enabled it)"
    fi
    while read -r rule; do
      change delete "$rule"
      log "ufw: '$rule' (ours) removed"
    done < <(ours)
  fi
  rm -f "$ENABLED_MARK" "$SSH_PORT_FILE"
  if ufw_active; then echo "ufw=active"; else echo "ufw=inactive"; fi
}

main() {
  case "${1:-}" in
    apply) shift && apply "$@" ;;
    remove) remove ;;
    *) die "usage: firewall.sh apply SSH_PORT [PORT...] | remove" ;;
  esac
}
main "$@"
