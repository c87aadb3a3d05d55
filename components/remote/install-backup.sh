#!/usr/bin/env bash
# install-backup.sh: install backup.sh, restore.sh, backup.conf (0600) and the cron.d entry. Safe to re-run.
# Runs on: the server, from components/backup.py. Args: INSTALL_DIR BACKUP_DIR CRON_FILE LOG_FILE, then the texts of backup.conf (without its secret lines), the cron.d entry, backup.sh, restore.sh.
# Reads on stdin: HEARTBEAT_URL=... and OFFSITE_COMMAND=... lines (may hold credentials), appended to backup.conf.
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# read_secrets: stdin's HEARTBEAT_URL and OFFSITE_COMMAND lines, checked and printed back (into a variable, never a log).
read_secrets() {
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    case "${line%%=*}" in
      HEARTBEAT_URL | OFFSITE_COMMAND) printf '%s\n' "$line" ;;
      "") ;;
      *) die "stdin: unexpected line '${line%%=*}=...': run this step from Pulumi (components/backup.py)" ;;
    esac
  done
}

main() {
  local usage="usage: install-backup.sh INSTALL_DIR BACKUP_DIR CRON_FILE LOG_FILE CONF_TEXT CRON_TEXT BACKUP_SH_TEXT RESTORE_SH_TEXT"
  local dir=${1:?$usage} backup_dir=${2:?$usage} cron_file=${3:?$usage} log_file=${4:?$usage}
  local conf=${5:?$usage} cron=${6:?$usage} backup_sh=${7:?$usage} restore_sh=${8:?$usage} secrets
  [[ $conf == *$'\n'RETENTION_DAYS=* ]] || die "the CONF_TEXT argument is not backup.conf"
  [[ $cron == *" root $dir/bin/backup.sh "* && $cron == *$'\n' ]] || die "the CRON_TEXT argument is not the cron.d entry for $dir/bin/backup.sh"
  [[ $backup_sh == '#!'* && $restore_sh == '#!'* ]] || die "the BACKUP_SH_TEXT and RESTORE_SH_TEXT arguments are not scripts"
  [ -d "$dir" ] || die "$dir does not exist: the GlitchTip stack is deployed first"
  secrets=$(read_secrets)
  [ -d "$dir/bin" ] || install -d -m 0700 "$dir/bin"
  [ -d "$backup_dir" ] || install -d -m 0700 "$backup_dir"
  printf '%s' "$backup_sh" | write_atomically "$dir/bin/backup.sh" 0700 root:root
  printf '%s' "$restore_sh" | write_atomically "$dir/bin/restore.sh" 0700 root:root
  { printf '%s' "$conf"; [ -z "$secrets" ] || printf '%s\n' "$secrets"; } | write_atomically "$dir/backup.conf" 0600 root:root
  [ -f "$log_file" ] || install -m 0600 /dev/null "$log_file"
  # last: cron runs the job only once everything it needs is in place
  printf '%s' "$cron" | write_atomically "$cron_file" 0644 root:root
  echo "backup_script=$dir/bin/backup.sh"
  echo "restore_script=$dir/bin/restore.sh"
  echo "cron_file=$cron_file"
}
main "$@"
