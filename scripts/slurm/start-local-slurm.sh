#!/usr/bin/env bash
# reconciler: a real single-node Slurm on this machine, from Debian 12's packages, without
# systemd. Used by tests/slurm (through .ci/run in CI) and by developers.
#
#   scripts/slurm/start-local-slurm.sh [start|stop|status]      (root; default: start)
#
#   SLURM_CPUS=N   job slots advertised for node "localhost" (default: nproc). More than the real
#                  core count is fine: TaskPlugin=task/none does no binding, and tiny test jobs
#                  then run side by side.
#   SLURM_DBD=1    also run mariadb + slurmdbd, so that `sacct` answers (default: no accounting;
#                  the reconciler adapter then works from squeue alone).
#   SLURM_FRESH=1  forget saved job records before starting (job ids restart).
#
# Idempotent: when everything already runs with the same configuration it only checks and
# prints "slurm ready". A changed configuration (CPUs, accounting) restarts the two slurm
# daemons, since `scontrol reconfigure` does not change a node's CPU count.
set -euo pipefail

action=${1:-start}
cpus=${SLURM_CPUS:-$(nproc)}
dbd=${SLURM_DBD:-0}
conf=/etc/slurm/slurm.conf
logdir=/var/log/slurm
spool=/var/spool/slurm
export DEBIAN_FRONTEND=noninteractive

log() { echo "[reconciler-slurm] $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts daemons)"

# The pid in a pidfile, printed only if that process is alive and is the named program:
# pidfiles outlive their daemons, and pids get reused.
alive() { # pidfile program
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && echo "$pid"
}

# TERM a daemon found through its pidfile, wait up to 10 s, then KILL.
halt() { # pidfile program
  local pid n
  pid=$(alive "$1" "$2") || return 0
  log "stopping $2 ($pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for n in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "$2 ($pid) still alive after TERM: KILL"
  kill -KILL "$pid" 2>/dev/null || true
}

# Retry a check every 0.1 s for up to N seconds.
until_ok() { # seconds what command...
  local tries=$(($1 * 10)) what=$2 n
  shift 2
  for n in $(seq "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "gave up waiting for $what"
  return 1
}

controller_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_state() { sinfo -h -n localhost -o %T 2>/dev/null || true; }
node_usable() { [[ "$(node_state)" =~ ^(idle|mixed|allocated)$ ]]; }
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
jobs_left() { [ -n "$(squeue -h -o %i 2>/dev/null)" ]; }

stop_all() {
  # slurmd's death leaves running jobs' slurmstepd behind: cancel jobs first.
  if controller_up && jobs_left; then
    log "cancelling remaining jobs"
    squeue -h -o %i | xargs -r scancel 2>/dev/null || true
    until_ok 20 "jobs to end" bash -c '[ -z "$(squeue -h -o %i)" ]' || true
  fi
  halt /run/slurmd.pid slurmd
  halt /run/slurmctld.pid slurmctld
  halt /run/slurmdbd.pid slurmdbd
  halt /run/mysqld/mysqld.pid mariadbd
  halt /run/munge/munged.pid munged
}

show_status() {
  local d
  for d in munged:/run/munge/munged.pid slurmctld:/run/slurmctld.pid slurmd:/run/slurmd.pid \
    slurmdbd:/run/slurmdbd.pid mariadbd:/run/mysqld/mysqld.pid; do
    printf '%-10s %s\n' "${d%%:*}" "$(alive "${d#*:}" "${d%%:*}" || echo '-')"
  done
  sinfo 2>/dev/null || true
}

case "$action" in
  stop) stop_all; log "stopped"; exit 0 ;;
  status) show_status; exit 0 ;;
  start) ;;
  *) die "unknown action '$action' (start, stop or status)" ;;
esac

# -- 1. packages: only the missing ones ---------------------------------------------------
packages=(slurmctld slurmd slurm-client munge)
[ "$dbd" = 1 ] && packages+=(slurmdbd mariadb-server)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get update -qq
  # Without --no-install-recommends the three core packages pull in ~40 more.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# -- 2. slurm.conf ------------------------------------------------------------------------
mkdir -p "$spool/ctld" "$spool/d" "$logdir" /etc/slurm
mem_mb=$(($(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo) - 512))
if [ "$dbd" = 1 ]; then
  # job_comment: so that `sacct -o Comment` shows the tag reconciler puts on its jobs.
  accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux"
else
  accounting="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
# batch_sched_delay=0: schedule queued batch jobs every second instead of every 3 s.
# config_overrides: accept CPUs above the hardware count instead of draining the node.
# ReturnToService=2: a node that registers with a valid config becomes usable by itself.
# MinJobAge=300: finished jobs stay visible to `squeue -t all` for 5 minutes.
wanted=$(
  cat <<EOF
# written by reconciler scripts/slurm/start-local-slurm.sh (SLURM_CPUS=$cpus SLURM_DBD=$dbd)
ClusterName=localcluster
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$spool/ctld
SlurmdSpoolDir=$spool/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$logdir/slurmctld.log
SlurmdLogFile=$logdir/slurmd.log
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
KillWait=5
$accounting
JobCompType=jobcomp/filetxt
JobCompLoc=$logdir/jobcomp.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
)
if [ "$(cat "$conf" 2>/dev/null)" != "$wanted" ]; then
  if alive /run/slurmctld.pid slurmctld >/dev/null || alive /run/slurmd.pid slurmd >/dev/null; then
    log "configuration changed: restarting slurmctld and slurmd"
    halt /run/slurmd.pid slurmd
    halt /run/slurmctld.pid slurmctld
  fi
  log "writing $conf"
  printf '%s\n' "$wanted" >"$conf"
fi

if [ "${SLURM_FRESH:-0}" = 1 ] && ! alive /run/slurmctld.pid slurmctld >/dev/null; then
  log "forgetting saved job records"
  rm -rf "${spool:?}/ctld/"* "${spool:?}/d/"*
fi

# -- 3. munge -----------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --force
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
if ! munge_ok; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  until_ok 10 munged munge_ok || die "munged did not start"
fi

# -- 4. accounting (optional) -------------------------------------------------------------
if [ "$dbd" = 1 ]; then
  if ! mariadb -e 'select 1' >/dev/null 2>&1; then
    mkdir -p /run/mysqld /var/log/mysql
    chown mysql:mysql /run/mysqld /var/log/mysql
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
    setsid -f /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
      --socket=/run/mysqld/mysqld.sock --bind-address=127.0.0.1 \
      --log-error=/var/log/mysql/error.log </dev/null >/dev/null 2>&1
    until_ok 30 mariadb mariadb -e 'select 1' || die "mariadb did not start"
  fi
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$logdir/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurmpw
EOF
  chmod 0600 /etc/slurm/slurmdbd.conf
  if ! alive /run/slurmdbd.pid slurmdbd >/dev/null; then
    /usr/sbin/slurmdbd
    until_ok 30 slurmdbd sacctmgr -n list cluster || die "slurmdbd did not answer"
  fi
fi

# -- 5. controller and node daemon --------------------------------------------------------
# Starting either daemon a second time kills the running one, hence the pidfile checks.
alive /run/slurmctld.pid slurmctld >/dev/null || /usr/sbin/slurmctld
until_ok 30 slurmctld controller_up || die "slurmctld is not answering ($logdir/slurmctld.log)"
alive /run/slurmd.pid slurmd >/dev/null || /usr/sbin/slurmd -N localhost

# -- 6. wait for the node -----------------------------------------------------------------
for n in $(seq 300); do
  node_usable && break
  state=$(node_state)
  # A DRAIN is saved across restarts; a node not responding ('*') is only waited for.
  if [[ "$state" =~ ^(down|drain|drained|draining|fail) ]] && [[ "$state" != *'*' ]]; then
    log "node is '$state': resuming it"
    scontrol update nodename=localhost state=resume || true
  fi
  sleep 0.1
done
if ! node_usable; then
  sinfo -N -l >&2 || true
  die "node localhost is '$(node_state)', not idle ($logdir/slurmd.log)"
fi
log "slurmctld $(alive /run/slurmctld.pid slurmctld), slurmd $(alive /run/slurmd.pid slurmd)," \
  "munged $(alive /run/munge/munged.pid munged), cpus $cpus, accounting $dbd"
echo "slurm ready"
