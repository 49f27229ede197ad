#!/bin/bash
# Runs inside the systemd-nspawn container as a unit after boot
# (test/systemd-nspawn.test.ts): cowvol.service under a real systemd, with a
# writer on a block file while the service is killed with -9 (Restart=) and
# restarted with `systemctl restart`, and a second writer on a file in a cowfs
# mount through the restart and a second kill -9. Each step appends a line of KEY=VALUE
# words to /results/steps (the status line is one value); the test reads them.
exec > /results/scenario.log 2>&1
set -x
say() { echo "$1" >> /results/steps; }
show() { systemctl show -p "$1" --value cowvol; }
# Waits (bounded) until the unit runs a main process other than $1.
running_other_than() {
  for _ in $(seq 300); do
    [ "$(show SubState)" = running ] && [ "$(show MainPID)" != "$1" ] && [ "$(show MainPID)" != 0 ] && return 0
    sleep 0.1
  done
  return 1
}
# Waits (bounded) until writer $1 (default: the block file's) has made 2048 more writes than when called: I/O goes on.
progressed() {
  local from file=/results/${1:-writer}.progress
  from=$(cat "$file" 2>/dev/null || echo 0)
  for _ in $(seq 600); do
    [ "$(cat "$file" 2>/dev/null || echo 0)" -ge $((from + 2048)) ] && return 0
    sleep 0.1
  done
  return 1
}
# The unit's ActiveState once systemd has reaped its main process (bounded): `cowvol stop` returns
# when the daemon is done, a moment before that, while the unit still reads "deactivating".
settled() {
  local state
  for _ in $(seq 300); do
    state=$(show ActiveState)
    [ "$state" != deactivating ] && break
    sleep 0.1
  done
  echo "$state"
}
finish() { journalctl -u cowvol --no-pager -o cat > /results/journal.txt; systemctl poweroff; exit 0; }

if ! cowvol pool init --pool /var/lib/cowvol || ! cowvol volume create v --size 64M --pool /var/lib/cowvol; then say "init=failed"; finish; fi
systemctl start cowvol
say "start=$? active=$(show ActiveState)"
say "status=$(show StatusText)"
node /opt/test/writer.mjs /run/cowvol/block/v &
writer=$!
progressed; say "writing=$?"
first=$(show MainPID)
systemctl kill -s KILL cowvol
running_other_than "$first"; say "kill9=$? restarts=$(show NRestarts)"
progressed; say "after_kill9=$?"
mkdir -p /mnt/home
cowvol volume create home --size 64M --kind fs --pool /var/lib/cowvol && cowvol mount home /mnt/home --pool /var/lib/cowvol
say "cowfs=$?"
truncate -s 16M /mnt/home/data
node /opt/test/writer.mjs /mnt/home/data cowfs &
cowfs_writer=$!
progressed cowfs; say "cowfs_writing=$?"
second=$(show MainPID)
systemctl restart cowvol
running_other_than "$second"; say "restart=$?"
progressed; say "after_restart=$?"
progressed cowfs; say "cowfs_after_restart=$?"
third=$(show MainPID)
systemctl kill -s KILL cowvol
running_other_than "$third"; say "kill9_cowfs=$?"
progressed cowfs; say "cowfs_after_kill9=$?"
progressed; say "after_second_kill9=$?"
touch /results/stop
wait "$writer"
say "writer=$?"
wait "$cowfs_writer"
say "cowfs_writer=$?"
cowvol stop --pool /var/lib/cowvol
say "stop=$? active=$(settled) mounts=$(grep -c ' /run/cowvol \| /mnt/home ' /proc/self/mountinfo)"
finish
