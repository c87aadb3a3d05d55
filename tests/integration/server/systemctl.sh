#!/bin/sh
# systemctl (shim): the throwaway server has no systemd; maps the verbs a deployment uses
# onto testhost-svc. Runs in: the server. Unknown units/verbs fail loudly, like a real error.
set -eu

unit_to_svc() {
  u=${1%.service}
  case "$u" in
    docker|containerd) echo docker ;;
    cron|crond) echo cron ;;
    ssh|sshd) echo ssh ;;
    *) echo "Unit $1 could not be found (testhost systemctl shim)." >&2; return 5 ;;
  esac
}

main() {
  while [ $# -gt 0 ]; do
    case "$1" in
      -q|--quiet|--no-pager|--now|--no-block|--system) shift ;;
      *) break ;;
    esac
  done
  verb=${1:-}
  [ $# -gt 0 ] && shift
  case "$verb" in
    daemon-reload|daemon-reexec) return 0 ;;
    enable|disable|is-enabled)
      for u in "$@"; do unit_to_svc "$u" >/dev/null; done
      [ "$verb" = is-enabled ] && echo enabled
      return 0
      ;;
    start|stop|restart|reload|try-restart|reload-or-restart)
      for u in "$@"; do
        s=$(unit_to_svc "$u")
        case "$verb" in
          try-restart|reload-or-restart) testhost-svc restart "$s" ;;
          *) testhost-svc "$verb" "$s" ;;
        esac
      done
      ;;
    is-active|status)
      rc=0
      for u in "$@"; do
        s=$(unit_to_svc "$u")
        if testhost-svc status "$s"; then
          echo active
        else
          echo inactive
          rc=3
        fi
      done
      return "$rc"
      ;;
    *) echo "systemctl shim: unsupported verb '$verb'" >&2; return 1 ;;
  esac
}

main "$@"
