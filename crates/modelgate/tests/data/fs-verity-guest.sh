#!/bin/sh
# The guest side of tests/integrity.rs's fs-verity test: PID 1 of a
# throwaway VM whose kernel has CONFIG_FS_VERITY. Every step prints a line
# the host test reads; `==` lines carry what it asserts on.
export PATH=/bin:/sbin HOME=/root RUST_BACKTRACE=1
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
ip link set lo up
say() { echo "== $*"; }
end() { say "END $1"; sync; poweroff -f; }
insmod /modules/loop.ko || end "no loop module"
truncate -s 256M /tmp/fs.img
mkfs.ext4 -q -b 4096 -O verity /tmp/fs.img || end "mkfs.ext4 -O verity failed"
mkdir -p /mnt && mount -o loop /tmp/fs.img /mnt || end "mount failed"
mkdir -p /mnt/model
# 8 MiB of weights, then a small config.
head -c 8388608 /dev/urandom > /mnt/model/weights.bin
echo '{"layers": 2}' > /mnt/model/config.json
sync

modelgate dev serve --data /tmp/dev > /tmp/dev.log 2>&1 &
i=0; until [ -f /tmp/dev/admin.token ] && wget -q -O /dev/null http://127.0.0.1:7370/healthz 2>/dev/null; do
  i=$((i+1)); [ $i -gt 300 ] && { cat /tmp/dev.log; end "no dev authority"; }; sleep 0.1; done
modelgate dev govern /mnt/model --data /tmp/dev --upstream http://127.0.0.1:9 --name m \
  --listen 127.0.0.1:7380 > /tmp/govern.log 2>&1 || { cat /tmp/govern.log; end "dev govern failed"; }
CONFIG=/tmp/dev/node/node.toml
export MODELGATE_NODE_FS_VERITY=true

status() { wget -q -O - http://127.0.0.1:7380/status 2>/dev/null; }
ms() { awk '{printf "%d", $1 * 1000}' /proc/uptime; }
# Wait until /status says $1 for the model (at most 120 s); prints how long
# it took (ms) and the bytes the node process had read by then.
await() {
  t0=$(ms)
  until status | grep -q "\"m\":{\"state\":\"$1\""; do
    [ $(( $(ms) - t0 )) -gt 120000 ] && { echo "never $1: $(status)"; return; }
    sleep 0.05
  done
  echo "$(( $(ms) - t0 )) $(awk '/^rchar/ {print $2}' /proc/$NODE/io)"
}

# First start: every file sealed, then hashed against the manifest.
MODELGATE_NODE_REHASH_INTERVAL_SECONDS=0 modelgate node serve --config $CONFIG --interval-ms 50 > /tmp/node1.log 2>&1 &
NODE=$!
say "FIRST_SERVING $(await Serving)"
say "STATUS_FIRST $(status)"
fsverity measure /mnt/model/weights.bin > /tmp/measure 2>&1 && say "MEASURED $(cat /tmp/measure)" || say "NOT_SEALED $(cat /tmp/measure)"
if echo x >> /mnt/model/weights.bin 2>/dev/null; then say "WRITABLE"; else say "READ_ONLY"; fi
kill $NODE; wait $NODE 2>/dev/null

# A restart: each sealed file measured, nothing read.
echo 3 > /proc/sys/vm/drop_caches
MODELGATE_NODE_REHASH_INTERVAL_SECONDS=0 modelgate node serve --config $CONFIG --interval-ms 50 > /tmp/node2.log 2>&1 &
NODE=$!
say "RESTART_SERVING $(await Serving)"
kill $NODE; wait $NODE 2>/dev/null

# One byte of the first block changed in the image, beneath ext4.
block=$(filefrag -v /mnt/model/weights.bin | awk '$1 == "0:" {sub(/\.\./, "", $4); print $4}')
[ -n "$block" ] || end "no extent"
sync; echo 3 > /proc/sys/vm/drop_caches
old=$(dd if=/tmp/fs.img bs=1 skip=$((block * 4096 + 100)) count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
new=$(( (old + 1) % 256 ))
printf "$(printf '\\%03o' $new)" | dd of=/tmp/fs.img bs=1 seek=$((block * 4096 + 100)) conv=notrunc 2>/dev/null
sync; echo 3 > /proc/sys/vm/drop_caches
if cat /mnt/model/weights.bin > /dev/null 2> /tmp/cat.err; then say "READ_OK"; else say "READ_FAILED $(cat /tmp/cat.err)"; fi

# Restarted with the background re-verification on: the measurement still
# matches (the Merkle tree's root is unchanged), so it serves; the first
# full read meets the changed block and contains.
echo 3 > /proc/sys/vm/drop_caches
MODELGATE_NODE_REHASH_INTERVAL_SECONDS=1 modelgate node serve --config $CONFIG --interval-ms 50 > /tmp/node3.log 2>&1 &
NODE=$!
say "ATTACKED_CONTAINED $(await Contained)"
say "STATUS_ATTACKED $(status)"
kill $NODE; wait $NODE 2>/dev/null
end ok
