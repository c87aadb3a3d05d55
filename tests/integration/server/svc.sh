#!/bin/sh
# testhost-svc: start/stop/restart/status of the server's daemons (there is no systemd).
# Runs in: the throwaway server, from testhost-init and the systemctl shim.
# Usage: testhost-svc start|stop|restart|reload|status docker|cron|ssh|registry
set -eu

pidfile_of() {
  case "$1" in
    docker) echo /var/run/docker.pid ;;
    cron) echo /run/crond.pid ;;
    ssh) echo /run/sshd.pid ;;
    registry) echo /run/docker-registry.pid ;;
    *) echo "testhost-svc: unknown service $1" >&2; exit 5 ;;
  esac
}

running() {
  pf=$(pidfile_of "$1")
  [ -s "$pf" ] && kill -0 "$(cat "$pf")" 2>/dev/null
}

wait_for() {
  # wait_for COMMAND SECONDS: poll every 0.2 s until COMMAND succeeds.
  tries=$(($2 * 5))
  while [ "$tries" -gt 0 ]; do
    if sh -c "$1" >/dev/null 2>&1; then
      return 0
    fi
    tries=$((tries - 1))
    sleep 0.2
  done
  echo "testhost-svc: '$1' still failing after $2 s" >&2
  return 1
}

start() {
  if running "$1"; then
    return 0
  fi
  case "$1" in
    docker)
      # The mirror is a flag, not daemon.json: a program that rewrites daemon.json keeps it.
      nohup dockerd --registry-mirror=http://127.0.0.1:5000 >>/var/log/dockerd.log 2>&1 &
      # like systemd's Type=notify: return once the daemon answers (bounded)
      wait_for "docker info" 30 || { tail -n 20 /var/log/dockerd.log >&2; return 1; }
      ;;
    cron) cron ;;
    ssh) /usr/sbin/sshd ;;
    registry)
      nohup docker-registry serve /etc/docker/registry/config.yml >>/var/log/docker-registry.log 2>&1 &
      echo $! >/run/docker-registry.pid
      wait_for "curl -fsS -o /dev/null http://127.0.0.1:5000/v2/" 30 \
        || { tail -n 20 /var/log/docker-registry.log >&2; return 1; }
      ;;
  esac
}

stop() {
  pf=$(pidfile_of "$1")
  if ! running "$1"; then
    return 0
  fi
  pid=$(cat "$pf")
  kill "$pid"
  i=0
  while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 150 ]; then
      kill -9 "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$pf"
}

main() {
  verb=${1:?usage: testhost-svc start|stop|restart|reload|status SERVICE}
  svc=${2:?usage: testhost-svc start|stop|restart|reload|status SERVICE}
  pidfile_of "$svc" >/dev/null
  case "$verb" in
    start) start "$svc" ;;
    stop) stop "$svc" ;;
    restart) stop "$svc"; start "$svc" ;;
    reload)
      if [ "$svc" = docker ] && running docker; then
        kill -HUP "$(cat "$(pidfile_of docker)")"
      else
        stop "$svc"; start "$svc"
      fi
      ;;
    status) running "$svc" ;;
    *) echo "testhost-svc: unknown verb $verb" >&2; exit 2 ;;
  esac
}

main "$@"
