#!/usr/bin/env bash
# app-env.sh: what set-dsn.sh and restore-dsn.sh share: dotenv-faithful edits of one key, and the app restart.
# Runs on: the server, bundled into set-dsn.sh and restore-dsn.sh (components/remote.py). Reads: the app's .env, PM2's process list.
# Values (DSNs) reach these functions on stdin or in shell variables only, never in argv.
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DOTENV_KEY=SENTRY_DSN
# Next to the env file: the original SENTRY_DSN line(s), written once, on the first apply; and
# a marker that exists while an edited env file waits for a successful restart (retried).
# shellcheck disable=SC2034 # read by set-dsn.sh and restore-dsn.sh
BACKUP_SUFFIX=.glitchtip-migration.orig PENDING_SUFFIX=.glitchtip-migration.restart-pending
# After a restart: how long processes may take to be online, and how long a pid must last.
ONLINE_SECONDS=${ONLINE_SECONDS:-30} STABLE_MS=${STABLE_MS:-1000}

# The dotenv grammar, as the npm `dotenv` package (16.x-18.x) reads a file: its LINE regex
#   ^\s*(export\s+)?KEY(\s*=\s*?|:\s+?)('...'|"..."|`...`|[^#\r\n]+)?\s*(#.*)?$   (m flag)
# applied to the text with \r\n turned into \n, the LAST assignment of a key winning.
# Every line is classified the same way here, so a KEY= line inside another key's
# multi-line quoted value is never taken for an assignment. A quoted value closes at the
# first unescaped quote (then at an escaped one, latest first, the way the regex
# backtracks) that is followed only by blanks or a comment up to the end of its line;
# without one the value is the unquoted rest of the line. A value may also start on a later
# line (dotenv's \s crosses line breaks). Not modelled: lone \r line breaks.
#
# Modes (-v mode=...), the env file as the input file, -v final_nl=0|1 (does it end in \n):
#   value    print the effective value of KEY (exit 3 when KEY is not assigned)
#   set      stdin: the new value (one line); print the file with every KEY assignment's
#            value replaced, quotes, `export `, spacing, comment and CRLF kept; a missing
#            KEY=value line is appended (after a line break when the file lacks a final one)
#   backup   print a header and the raw KEY assignment lines (restore's input)
#   restore  stdin: a backup; print the file with the KEY lines put back byte for byte
DOTENV_AWK=$(
  cat <<'AWK'
function fail(msg) { printf "%s\n", msg > "/dev/stderr"; failed = 2; exit 2 }
function keyname(head,   h) {
  h = head
  sub(/^[ \t]*/, "", h)
  if (h ~ /^export[ \t]+[A-Za-z0-9_.-]+([ \t]*=|:[ \t]|:$)/) sub(/^export[ \t]+/, "", h)
  match(h, /^[A-Za-z0-9_.-]+/)
  return substr(h, 1, RLENGTH)
}
function tail_ok(j, c) { return substr(B[j], c + 1) ~ /^[ \t]*(#.*)?$/ }
# close_quote(i, col, q): where the quoted value opened at line i, column col ends (CL, CC; CL = 0: never).
function close_quote(i, col, q,   j, s, p, c, nesc, gl, gc, t) {
  nesc = 0; gl = 0
  for (j = i; j <= n && !gl; j++) {
    s = B[j]; p = (j == i) ? col + 1 : 1
    while (p <= length(s)) {
      c = substr(s, p, 1)
      if (c == "\\" && substr(s, p + 1, 1) == q) { nesc++; EL[nesc] = j; EC[nesc] = p + 1; p += 2; continue }
      if (c == q) { gl = j; gc = p; break }
      p++
    }
  }
  CL = 0; CC = 0
  if (gl && tail_ok(gl, gc)) { CL = gl; CC = gc; return }
  for (t = nesc; t >= 1; t--) if (tail_ok(EL[t], EC[t])) { CL = EL[t]; CC = EC[t]; return }
}
# first_char(i): the first non-blank character after line i, on a later line: FL (0: none), FC.
function first_char(i,   j) {
  for (j = i + 1; j <= n; j++) if (match(B[j], /[^ \t]/)) { FL = j; FC = RSTART; return }
  FL = 0
}
# parse(): nk KEY assignments at lines K[t]; HL[t] = length of "[export ]KEY=" and WL[t] of the
# blanks after it; QC[t] = quote char when the value is quoted and closes on its line at QE[t].
# multi = a KEY assignment whose value reaches onto another line.
function parse(   i, b, hl, k, rest, wl, v, q, last) {
  nk = 0; multi = 0; i = 1
  while (i <= n) {
    b = B[i]; last = i
    if (match(b, /^[ \t]*(export[ \t]+)?[A-Za-z0-9_.-]+([ \t]*=|:[ \t]|:$)/) && (substr(b, RLENGTH) != ":" || i < n || final_nl)) {
      hl = RLENGTH; k = keyname(substr(b, 1, hl)); rest = substr(b, hl + 1)
      match(rest, /^[ \t]*/); wl = RLENGTH; v = substr(rest, wl + 1); q = substr(v, 1, 1)
      CL = 0
      if (q == "\"" || q == "\047" || q == "`") {
        close_quote(i, hl + wl + 1, q)
        if (CL > i) last = CL
      } else if (v == "") {
        # Blanks only: the value may start on a later line (the \s of the dotenv regex crosses
        # line breaks): a quoted one after any blank lines, or, after "KEY:" whose colon needs
        # that line break as its blank, the next line unquoted.
        first_char(i)
        q = FL ? substr(B[FL], FC, 1) : ""
        if (q == "\"" || q == "\047" || q == "`") close_quote(FL, FC, q)
        if (CL) last = CL
        else if (substr(b, hl) == ":" && i < n && B[i + 1] != "" && B[i + 1] !~ /^#/) last = i + 1
        CL = 0
      }
      if (k == key) {
        nk++; K[nk] = i; HL[nk] = hl; WL[nk] = wl; QC[nk] = ""; QE[nk] = 0
        if (CL == i) { QC[nk] = q; QE[nk] = CC }
        if (last > i && !multi) multi = i
      }
    }
    i = last + 1
  }
}
function value(t,   b, s, p, q) {
  b = B[K[t]]
  if (QC[t] != "") {
    s = substr(b, HL[t] + WL[t] + 2, QE[t] - HL[t] - WL[t] - 2)
    if (QC[t] == "\"") { gsub(/\\n/, "\n", s); gsub(/\\r/, "\r", s) }
    return s
  }
  s = substr(b, HL[t] + WL[t] + 1)
  p = index(s, "#"); if (p) s = substr(s, 1, p - 1)
  sub(/[ \t]+$/, "", s)
  q = substr(s, 1, 1)
  if (length(s) >= 2 && (q == "\"" || q == "\047" || q == "`") && substr(s, length(s), 1) == q) s = substr(s, 2, length(s) - 2)
  return s
}
# assignment(t, v): line K[t] with its value replaced by v, every other byte kept.
function assignment(t, v,   b, pre, s, p, val, comment, trailing, core, sep) {
  b = B[K[t]]; pre = substr(b, 1, HL[t] + WL[t])
  if (QC[t] != "") return pre QC[t] v substr(b, QE[t]) CR[K[t]]
  if (substr(pre, length(pre)) == ":") pre = pre " "  # "KEY:" at the end of its line: the colon needs a blank
  s = substr(b, HL[t] + WL[t] + 1)
  p = index(s, "#")
  val = p ? substr(s, 1, p - 1) : s; comment = p ? substr(s, p) : ""
  match(val, /[ \t]*$/); trailing = substr(val, RSTART); core = substr(val, 1, RSTART - 1)
  sep = (core == "" && trailing == "" && comment != "") ? " " : ""
  return pre v sep trailing comment CR[K[t]]
}
function term(i) { return (i < n || final_nl) ? "\n" : "" }
BEGIN {
  if (key == "") key = "SENTRY_DSN"
  if (mode == "set" && (getline newval < "/dev/stdin") <= 0) fail("no value on stdin")
  if (mode == "restore") {
    if ((getline header < "/dev/stdin") <= 0 || header !~ /^# glitchtip-migration backup v1: lines=[0-9]+ final_newline=[01] eol=(lf|crlf) /)
      fail("the backup does not start with a glitchtip-migration v1 header")
    split(header, hf, /[ =]/); nb = hf[6] + 0; b_final = hf[8] + 0; b_eol = hf[10]
    for (t = 1; t <= nb; t++) if ((getline O[t] < "/dev/stdin") <= 0) fail("the backup is truncated")
  }
}
{ n++; L[n] = $0; B[n] = $0; CR[n] = sub(/\r$/, "", B[n]) ? "\r" : "" }
END {
  if (failed) exit failed
  parse()
  if (multi && mode != "backup") fail(key " on line " multi " has a value spanning several lines; edit it by hand")
  if (mode == "value") {
    if (!nk) exit 3
    printf "%s", value(nk)
  } else if (mode == "backup") {
    printf "# glitchtip-migration backup v1: lines=%d final_newline=%d eol=%s of %s\n", nk, final_nl, (n && CR[1] != "") ? "crlf" : "lf", file
    for (t = 1; t <= nk; t++) printf "%s\n", L[K[t]]
  } else if (mode == "set") {
    if (!nk) {
      eol = (n && CR[1] != "") ? "\r\n" : "\n"
      for (i = 1; i <= n; i++) printf "%s%s", L[i], (i < n || final_nl) ? "\n" : eol
      printf "%s=%s%s", key, newval, eol
    } else {
      t = 1
      for (i = 1; i <= n; i++) {
        if (t <= nk && i == K[t]) { printf "%s%s", assignment(t, newval), term(i); t++ }
        else printf "%s%s", L[i], term(i)
      }
    }
  } else if (mode == "restore") {
    if (nb == 0) {
      # The original had no KEY line: drop the ones set added, and the line break added before them.
      t = 1; kept = 0
      for (i = 1; i <= n; i++) { if (t <= nk && i == K[t]) { t++; continue } ; R[++kept] = L[i] }
      dropped_last = nk && K[nk] == n
      for (i = 1; i <= kept; i++) {
        if (i < kept || (final_nl && !dropped_last) || (dropped_last && b_final)) { printf "%s\n", R[i]; continue }
        if (dropped_last && b_eol == "crlf") sub(/\r$/, "", R[i])
        printf "%s", R[i]
      }
    } else {
      if (nk != nb) fail("the file has " nk " " key " line(s), the backup " nb ": put the original back by hand from the backup")
      t = 1
      for (i = 1; i <= n; i++) {
        if (t <= nk && i == K[t]) { printf "%s%s", O[t], term(i); t++ }
        else printf "%s%s", L[i], term(i)
      }
    }
  } else fail("unknown mode " mode)
}
AWK
)

# dotenv MODE FILE [awk -v assignments...]: run DOTENV_AWK over FILE (stdin passes through).
dotenv() {
  local mode=$1 file=$2 final_nl=1
  shift 2
  [ ! -s "$file" ] || [ -z "$(tail -c 1 -- "$file")" ] || final_nl=0
  LC_ALL=C awk -v mode="$mode" -v key="$DOTENV_KEY" -v final_nl="$final_nl" -v file="$file" "$@" "$DOTENV_AWK" "$file"
}

# env_file_resolve PATH: the real path of an existing regular env file (a symlink is followed, not replaced).
env_file_resolve() {
  local path=$1 real
  real=$(readlink -f -- "$path") || die "cannot resolve $path"
  [ -f "$real" ] || die "$path does not exist or is not a regular file: set appEnvFile to the app's dotenv file"
  [ "$real" = "$path" ] || log "$path is a link to $real: editing $real"
  printf '%s\n' "$real"
}

# env_file_install FILE NEW: NEW's bytes into FILE atomically, keeping FILE's mode and owner.
env_file_install() {
  local file=$1 new=$2 mode owner
  mode=$(stat -c '%a' -- "$file")
  owner=$(stat -c '%u:%g' -- "$file")
  write_atomically "$file" "$mode" "$owner" <"$new"
}

# backup_create FILE BACKUP: the original KEY line(s) of FILE into BACKUP (0600), never over an existing one.
backup_create() {
  local file=$1 backup=$2 tmp
  if [ -e "$backup" ]; then
    return 0
  fi
  tmp=$(mktemp "$backup.XXXXXX")
  dotenv backup "$file" >"$tmp" || { rm -f "$tmp"; die "could not read the $DOTENV_KEY lines of $file"; }
  chmod 0600 "$tmp"
  # A hard link never replaces an existing file: the first backup wins, even against a concurrent run.
  ln -- "$tmp" "$backup" 2>/dev/null || log "$backup appeared meanwhile: kept as it is"
  rm -f "$tmp"
  log "original $DOTENV_KEY line(s) of $file saved to $backup"
}

# ---- PM2 ---------------------------------------------------------------------------------

PM2_CMD=()
NODE_BIN=
PM2_HOME_DIR=

# Runs `pm2 jlist` (argv: COUNT PM2_CMD... MODE ARGS) and prints what the restart needs, as TSV:
#   select DIR NAMES   ids of NAMES (comma list), or of every process whose cwd is DIR when
#                      NAMES is empty: "id<TAB>name<TAB>PATH<TAB>HOME" (what the process runs with)
#   status IDS         stdin: the expected SENTRY_DSN, or nothing to skip that comparison:
#                      "id<TAB>name<TAB>status<TAB>pid<TAB>same|differs|unset"
#   stale-dump FILE NAME...  stdin: the new value; the NAMEs whose entry in PM2's dump file holds another SENTRY_DSN
PM2_PROBE_JS=$(
  cat <<'JS'
"use strict";
const { execFileSync } = require("child_process");
const fs = require("fs");
const count = Number(process.argv[1]);
const pm2 = process.argv.slice(2, 2 + count);
const [mode, ...args] = process.argv.slice(2 + count);
const KEY = "SENTRY_DSN";
function fail(msg, code) { process.stderr.write(msg + "\n"); process.exit(code || 2); }
function jlist() {
  let out;
  try {
    out = execFileSync(pm2[0], pm2.slice(1).concat(["jlist"]), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 1 << 28 });
  } catch (e) { fail("pm2 jlist failed: " + String(e.stderr || e.message).trim().split("\n").slice(-3).join(" ")); }
  const line = out.split("\n").reverse().find((l) => l.startsWith("["));
  if (!line) fail("pm2 jlist printed no process list");
  return JSON.parse(line);
}
function real(p) { try { return fs.realpathSync(p); } catch (e) { return p; } }
// What the process gets for NAME: PM2 starts it with the fields of pm2_env overlaid by pm2_env.env
// (God.executeApp); a process started from an ecosystem file keeps the caller's variables up there.
function effective(e, name) {
  const v = e && e.env && e.env[name] !== undefined ? e.env[name] : (e || {})[name];
  return v === undefined || v === null ? undefined : String(v);
}
function clean(s) { return String(s === undefined || s === null ? "" : s).replace(/[\t\n\r]/g, " "); }
function stdin() { try { return fs.readFileSync(0, "utf8").replace(/\n$/, ""); } catch (e) { return ""; } }
const ids = (s) => (s ? s.split(",").filter(Boolean) : []);
if (mode === "select") {
  const [dir, names] = args;
  const list = jlist();
  let chosen;
  if (names) {
    const missing = ids(names).filter((n) => !list.some((p) => p.name === n));
    if (missing.length) fail("PM2 runs no process named " + missing.join(", ") + " (it runs: " + (list.map((p) => p.name).join(", ") || "nothing") + "): fix appPm2Apps", 4);
    chosen = list.filter((p) => ids(names).includes(p.name));
  } else {
    const want = real(dir);
    chosen = list.filter((p) => p.pm2_env && p.pm2_env.pm_cwd && real(p.pm2_env.pm_cwd) === want);
    if (!chosen.length) fail("PM2 runs no process in " + dir + " (it runs: " + (list.map((p) => p.name + " in " + ((p.pm2_env || {}).pm_cwd || "?")).join(", ") || "nothing") + "): set appPm2Apps or appRestartCommand", 5);
  }
  for (const p of chosen) {
    console.log([p.pm_id, clean(p.name), clean(effective(p.pm2_env, "PATH")), clean(effective(p.pm2_env, "HOME"))].join("\t"));
  }
} else if (mode === "status") {
  const want = stdin();
  const list = jlist();
  for (const id of ids(args[0])) {
    const p = list.find((x) => String(x.pm_id) === id);
    if (!p) { console.log([id, "?", "missing", "0", "unset"].join("\t")); continue; }
    const have = effective(p.pm2_env, KEY);
    const state = have === undefined ? "unset" : !want || have === want ? "same" : "differs";
    console.log([id, clean(p.name), clean((p.pm2_env || {}).status), p.pid || 0, state].join("\t"));
  }
} else if (mode === "stale-dump") {
  const want = stdin();
  let dump;
  try { dump = JSON.parse(fs.readFileSync(args[0], "utf8")); } catch (e) { process.exit(0); }
  const chosen = args.slice(1);  // names: `pm2 save` drops the ids from its dump
  for (const e of Array.isArray(dump) ? dump : []) {
    if (!chosen.includes(e.name)) continue;
    const have = effective(e, KEY);
    if (have !== undefined && have !== want) console.log(clean(e.name));
  }
} else fail("unknown mode " + mode);
JS
)

# pm2_locate [optional]: PM2_CMD (how to run pm2), NODE_BIN, PM2_HOME_DIR. Dies when PM2 is
# missing or not running, or with "optional" returns 1 instead.
pm2_locate() {
  local optional=${1:-} bin="" candidate script
  bin=$(command -v pm2 || true)
  if [ -z "$bin" ]; then
    # A non-interactive SSH session misses nvm's and npm-global's PATH entries.
    for candidate in /usr/local/bin/pm2 /usr/bin/pm2 "$HOME"/.npm-global/bin/pm2 "$HOME"/.nvm/versions/node/*/bin/pm2; do
      [ -x "$candidate" ] && bin=$candidate
    done
  fi
  if [ -z "$bin" ]; then
    [ -z "$optional" ] || return 1
    die "pm2 is not installed for $(id -un) (not on PATH, not in /usr/local/bin, ~/.npm-global or ~/.nvm): set appRestartCommand"
  fi
  NODE_BIN=$(command -v node || true)
  [ -n "$NODE_BIN" ] || [ ! -x "$(dirname "$bin")/node" ] || NODE_BIN=$(dirname "$bin")/node
  [ -n "$NODE_BIN" ] || die "node is not on PATH nor next to $bin: set appRestartCommand"
  script=$(readlink -f -- "$bin")
  if head -n 1 -- "$script" | grep -q '^#!.*node'; then
    PM2_CMD=("$NODE_BIN" "$script") # pm2 then runs whatever PATH the restart gives it
  else
    PM2_CMD=("$bin")
  fi
  PM2_HOME_DIR=${PM2_HOME:-$HOME/.pm2}
  if ! { [ -s "$PM2_HOME_DIR/pm2.pid" ] && kill -0 "$(cat "$PM2_HOME_DIR/pm2.pid")" 2>/dev/null; }; then
    [ -z "$optional" ] || return 1
    die "PM2 is not running for $(id -un) (no live daemon in $PM2_HOME_DIR): start the app, or set sshUser to the user running it"
  fi
}

# pm2_probe MODE ARGS...: PM2_PROBE_JS with the pm2 command in front of its arguments.
pm2_probe() {
  "$NODE_BIN" -e "$PM2_PROBE_JS" "${#PM2_CMD[@]}" "${PM2_CMD[@]}" "$@"
}

# pm2_restart_group PATH HOME VALUE ID...: `pm2 restart IDS --update-env` with SENTRY_DSN=VALUE.
# --update-env merges the CALLER's whole environment into each app's saved one (PM2's
# Utility.extend): the caller here has nothing but the PATH and HOME the app runs with,
# PM2_HOME when it is not the default, and SENTRY_DSN (pm2's CLI adds PM2_USAGE=CLI, which
# the app got from the CLI that started it), so the app's environment changes in SENTRY_DSN
# only. The value travels in the environment of that one pm2 call, never in its argv.
pm2_restart_group() {
  local app_path=$1 app_home=$2 value=$3 pm2_home=$PM2_HOME_DIR var
  shift 3
  (
    while IFS= read -r var; do
      unset "$var" 2>/dev/null || true
    done < <(compgen -e)
    export PATH=${app_path:-/usr/local/bin:/usr/bin:/bin} HOME=${app_home:-$HOME}
    [ "$pm2_home" = "$HOME/.pm2" ] || export PM2_HOME=$pm2_home
    export SENTRY_DSN=$value
    exec "${PM2_CMD[@]}" restart "$@" --update-env
  ) </dev/null >&2
}

now_ms() {
  local t=${EPOCHREALTIME//[.,]/}
  echo $((t / 1000))
}

# pm2_wait_online IDS VALUE: every process online with the same pid for STABLE_MS (a crash at
# start shows as a new pid or another status), and none holding another SENTRY_DSN than VALUE
# (when VALUE is not empty); dies naming the ones that fail.
pm2_wait_online() {
  local ids=$1 value=$2 deadline rows bad stable_since=0 last_pids="" pids
  deadline=$(($(now_ms) + ONLINE_SECONDS * 1000))
  while :; do
    rows=$(printf '%s' "$value" | pm2_probe status "$ids")
    bad=$(awk -F '\t' '$3 != "online" { printf "%s%s (%s)", sep, $2, $3; sep = ", " }' <<<"$rows")
    pids=$(cut -f 4 <<<"$rows" | tr '\n' ' ')
    if [ -n "$bad" ]; then
      last_pids=""
    elif [ "$pids" != "$last_pids" ]; then
      stable_since=$(now_ms) last_pids=$pids
    elif [ $(($(now_ms) - stable_since)) -ge "$STABLE_MS" ]; then
      break
    fi
    [ "$(now_ms)" -lt "$deadline" ] ||
      die "not online ${ONLINE_SECONDS}s after the restart: ${bad:-$(cut -f 2 <<<"$rows" | sort -u | paste -sd ' ' -) (restarting again and again)}; see pm2 logs"
    sleep 0.3
  done
  bad=$(awk -F '\t' '$5 == "differs" { printf "%s%s", sep, $2; sep = ", " }' <<<"$rows")
  [ -z "$bad" ] || die "PM2 still holds another SENTRY_DSN for $bad, which dotenv does not override: restart them with the new value (SENTRY_DSN=... pm2 restart NAME --update-env), or leave appRestartCommand empty"
  log "online: $(cut -f 2 <<<"$rows" | sort -u | paste -sd ' ' -)"
}

# pm2_save_if_stale VALUE NAME...: `pm2 save` when PM2's dump (what a reboot resurrects) holds another SENTRY_DSN.
pm2_save_if_stale() {
  local value=$1 dump=$PM2_HOME_DIR/dump.pm2 stale
  shift
  [ -f "$dump" ] || return 0
  stale=$(printf '%s' "$value" | pm2_probe stale-dump "$dump" "$@")
  [ -n "$stale" ] || return 0
  log "PM2's dump holds another SENTRY_DSN for $(paste -sd ' ' - <<<"$stale"): pm2 save, so a reboot keeps the new one"
  "${PM2_CMD[@]}" save </dev/null >&2
}

# restart_plan DIR APPS COMMAND: resolve what restart_run will restart, before anything changes
# (a wrong appPm2Apps fails here, with the env file untouched).
#   COMMAND empty: the PM2 processes APPS (comma list; empty: every PM2 process whose cwd is
#   DIR), restarted with the new value (pm2_restart_group), then checked online and holding it.
#   COMMAND set: COMMAND, run in DIR; then APPS (or DIR's PM2 processes, if PM2 runs any)
#   are checked online and holding no other SENTRY_DSN.
PLAN_DIR='' PLAN_COMMAND='' PLAN_ROWS=''
restart_plan() {
  PLAN_DIR=$1 PLAN_COMMAND=$3 PLAN_ROWS=
  local apps=$2
  if [ -n "$PLAN_COMMAND" ] && [ -z "$apps" ]; then
    if ! pm2_locate optional || ! PLAN_ROWS=$(pm2_probe select "$PLAN_DIR" "" 2>/dev/null); then
      PLAN_ROWS=
      log "no PM2 process runs in $PLAN_DIR: appRestartCommand's result will not be checked"
    fi
    return 0
  fi
  pm2_locate
  PLAN_ROWS=$(pm2_probe select "$PLAN_DIR" "$apps")
}

# restart_run VALUE: carry out restart_plan with VALUE as the new SENTRY_DSN; RESTARTED says what was restarted.
RESTARTED=
restart_run() {
  local value=$1 ids group=() names=() group_path group_home id app_path app_home
  ids=$(cut -f 1 <<<"$PLAN_ROWS" | paste -sd , -)
  if [ -n "$PLAN_COMMAND" ]; then
    log "running appRestartCommand in $PLAN_DIR"
    (cd "$PLAN_DIR" && bash -c "$PLAN_COMMAND") </dev/null >&2 || die "appRestartCommand failed: $PLAN_COMMAND"
    RESTARTED="appRestartCommand"
    [ -z "$PLAN_ROWS" ] || pm2_wait_online "$ids" "$value"
    return 0
  fi
  # One pm2 call per distinct (PATH, HOME) among the apps, each with the apps' own values.
  while IFS=$'\t' read -r group_path group_home; do
    group=()
    while IFS=$'\t' read -r id _ app_path app_home; do
      [ "$app_path" != "$group_path" ] || [ "$app_home" != "$group_home" ] || group+=("$id")
    done <<<"$PLAN_ROWS"
    log "restarting PM2 process(es) ${group[*]} with the new SENTRY_DSN (--update-env)"
    pm2_restart_group "$group_path" "$group_home" "$value" "${group[@]}" || die "pm2 restart ${group[*]} --update-env failed"
  done < <(cut -f 3,4 <<<"$PLAN_ROWS" | sort -u)
  pm2_wait_online "$ids" "$value"
  mapfile -t names < <(cut -f 2 <<<"$PLAN_ROWS" | sort -u)
  pm2_save_if_stale "$value" "${names[@]}"
  # shellcheck disable=SC2034 # read by the caller
  RESTARTED=$(cut -f 2 <<<"$PLAN_ROWS" | sort -u | paste -sd , -)
}
