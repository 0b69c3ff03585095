#!/usr/bin/env bash
# Installs Debian's Slurm (slurmctld, slurmd, the client commands) and munge for the one-node
# cluster test (pipeline/jobs TestSlurmArray, `./just test-slurm`). Idempotent: exits at once
# when the commands are present. Needs root; it only installs packages — the test writes its
# own slurm.conf and munge key in a temporary directory and starts the daemons itself (no
# systemd units are enabled or started).
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
missing=()
for c in slurmctld slurmd sbatch squeue scancel munged mungekey; do
    # Debian puts the daemons in /usr/sbin, which may not be on a non-root PATH.
    have "$c" || [ -x "/usr/sbin/$c" ] || missing+=("$c")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "scripts/slurm/setup.sh: missing ${missing[*]}; run as root or install slurm-wlm and munge yourself" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps the packages' maintainer scripts from starting munge/slurm services.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
echo "scripts/slurm/setup.sh: installed $(/usr/sbin/slurmctld -V 2>/dev/null || echo slurm-wlm)"
