#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests that need a real scheduler
# (tests/cluster/): Debian's slurm-wlm, slurmdbd (accounting, for sacct), munge and MariaDB,
# all on localhost (127.0.0.1 and unix sockets only).
#
#   scripts/slurm_cluster.sh start    install what is missing (root, apt), write the configs,
#                                     start the daemons, wait until the node is idle and sacct
#                                     answers; a fresh cluster (no old jobs) unless it is up
#   scripts/slurm_cluster.sh stop     cancel the cluster's jobs, then stop exactly the daemons
#                                     `start` started (by pid)
#   scripts/slurm_cluster.sh status   say whether it is up (exit 0) or not (exit 1)
#
# Exit 3: this machine cannot have the cluster (not root, not Debian, or apt failed); the line
# printed says why, so callers can skip. The daemons' pids, logs and state are in
# $IMLIB_SLURM_STATE (default /tmp/imlib-slurm). It writes /etc/slurm/slurm.conf and
# /etc/slurm/slurmdbd.conf: meant for a test machine, not for a machine with a SLURM of its own.
set -euo pipefail

STATE=${IMLIB_SLURM_STATE:-/tmp/imlib-slurm}
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)  # started in this order, stopped in reverse
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
CLUSTER=imlibtest
ACCOUNT=imlib_test

say() { echo "slurm_cluster: $*"; }
cannot() { say "$*"; exit 3; }

pid_of() { cat "$STATE/$1.pid" 2>/dev/null || true; }

alive() {  # alive NAME: the recorded pid runs, and is that daemon
    local pid
    pid=$(pid_of "$1")
    [[ -n $pid ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]
}

up() {
    for daemon in "${DAEMONS[@]}"; do alive "$daemon" || return 1; done
    sinfo -h -o %T 2>/dev/null | grep -qx idle && sacct -n -X -S now >/dev/null 2>&1
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds
    local seconds=$1 what=$2
    shift 2
    for ((i = 0; i < seconds * 2; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    say "gave up after ${seconds}s waiting for $what; logs in $STATE/log"
    exit 1
}

launch() {  # launch NAME COMMAND...: in a session of its own, its pid recorded
    local name=$1
    shift
    setsid "$@" >"$STATE/log/$name.console" 2>&1 </dev/null &
    echo $! >"$STATE/$name.pid"
}

install_packages() {
    local missing=()
    for package in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$package")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || cannot "no apt-get here to install ${missing[*]}; skipped"
    say "installing ${missing[*]} (a minute or two)"
    {
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    } >"$STATE/log/apt.log" 2>&1 \
        || cannot "apt-get install ${missing[*]} failed (see $STATE/log/apt.log); skipped"
}

write_configs() {
    local node cpus memory
    node=$(hostname -s)
    cpus=$(nproc)
    memory=$(free -m | awk '/^Mem:/ {print int($2 * 0.9)}')  # a little less than there is
    mkdir -p /etc/slurm
    cat >/etc/slurm/slurm.conf <<EOF
# Written by scripts/slurm_cluster.sh: a one-node test cluster on localhost.
ClusterName=$CLUSTER
SlurmctldHost=$node(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits cred_expire + 1 s before it may start again (default 120 s)
AuthInfo=cred_expire=10
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
# Look at the queue every 1-2 s, not every 30-60 s: a requeued job starts once eligible
SchedulerParameters=sched_interval=2,bf_interval=1
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
# SIGTERM to SIGKILL, SLURM's default: a cancelled job must stop at SIGTERM, not here
KillWait=30
MinJobAge=300
InactiveLimit=0
Waittime=0
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    install -m 600 -o slurm -g slurm /dev/stdin /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=slurm
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$1
EOF
}

start() {
    [[ $EUID -eq 0 ]] || cannot "starting the test cluster needs root (apt, /etc/slurm); skipped"
    [[ -r /etc/debian_version ]] || cannot "the test cluster needs Debian's packages; skipped"
    if up; then say "already up ($(sinfo -h -o '%P %T %N'))"; return 0; fi
    stop >/dev/null  # whatever part of an earlier cluster still runs
    rm -rf "$STATE"
    mkdir -p "$STATE"/{log,run,slurmctld,slurmd}
    install_packages
    chown slurm:slurm "$STATE/log" "$STATE/run" "$STATE/slurmctld"
    local password
    password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    write_configs "$password"

    [[ -s /etc/munge/munge.key ]] || mungekey --create --force
    install -d -o munge -g munge /run/munge
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid "$STATE/munged.pid"  # munged daemonizes: its own pid file

    install -d -o mysql -g mysql /run/mysqld
    launch mariadbd /usr/sbin/mariadbd --user=mysql --skip-networking \
        --socket=/run/mysqld/mysqld.sock --innodb-buffer-pool-size=64M
    wait_for 60 MariaDB mariadb --socket=/run/mysqld/mysqld.sock -e "SELECT 1"
    mariadb --socket=/run/mysqld/mysqld.sock <<EOF
DROP DATABASE IF EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$password';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF

    launch slurmdbd /usr/sbin/slurmdbd -D
    wait_for 60 slurmdbd sacctmgr -n list cluster
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    sacctmgr -i add account "$ACCOUNT" >/dev/null
    sacctmgr -i add user root Account="$ACCOUNT" >/dev/null
    launch slurmctld /usr/sbin/slurmctld -D
    wait_for 60 slurmctld scontrol ping
    launch slurmd /usr/sbin/slurmd -D
    wait_for 90 "the node to be idle" bash -c 'sinfo -h -o %T | grep -qx idle'
    wait_for 60 sacct sacct -n -X -S now
    say "up: $(sinfo -h -o '%P %T %N'), accounting on (pids and logs in $STATE)"
}

stop() {
    local stopped=()
    if alive slurmctld && [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
        scancel --user "$(id -un)" || true  # its jobs: none outlives it (slurmstepd would)
        for ((t = 0; t < 80; t++)); do [[ -z $(squeue -h -o %i) ]] && break; sleep 0.5; done
    fi
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        local daemon=${DAEMONS[i]}
        if alive "$daemon"; then
            local pid
            pid=$(pid_of "$daemon")
            kill "$pid"
            for ((t = 0; t < 40; t++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
            stopped+=("$daemon")
        fi
        rm -f "$STATE/$daemon.pid"
    done
    say "stopped: ${stopped[*]:-nothing was running}"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) if up; then say "up: $(sinfo -h -o '%P %T %N')"; else say "down"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
