#!/bin/sh
# testhost-init: PID 1's child in the throwaway server; seeds keys, starts daemons, runs sshd.
# Runs in: the nspawn container (under tini). Reads: /run/testhost-seed (bound read-only).
set -eu

seed=/run/testhost-seed

main() {
  install -d -m 0755 /run/sshd
  install -d -m 0700 /root/.ssh
  install -m 0600 "$seed/authorized_keys" /root/.ssh/authorized_keys
  install -m 0600 "$seed/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
  install -m 0644 "$seed/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
  if [ -f "$seed/app.env" ]; then
    install -m 0600 "$seed/app.env" /opt/ai-admin/.env
  fi
  testhost-svc start registry
  testhost-svc start docker
  testhost-svc start cron
  exec /usr/sbin/sshd -D -e
}

main "$@"
