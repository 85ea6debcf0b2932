#!/bin/sh
# mall-operator cache node entrypoint (Valkey/Redis cluster mode). POSIX sh.
#
# Usage: cluster.sh run | probe | prestop
#   run      render the node config, start the server, join or bootstrap the cluster, wait
#   probe    exit 0 when this node serves: cluster_state ok, and a replica's link is up
#   prestop  a primary with a connected replica hands its slots over (CLUSTER FAILOVER)
#
# The node's neighbours are computed, never listed, so scaling changes no environment:
#   addr(shard, ordinal) = NODE_HOST_TEMPLATE with {shard}/{ordinal} substituted,
#                          port NODE_PORT + shard*PORT_STRIDE_SHARD + ordinal*PORT_STRIDE_ORDINAL
# In a pod the template is the StatefulSet's stable DNS name and both strides are 0; a test on
# loopback uses 127.0.0.1 and strides to give every node its own port.
#
# Environment: SHARD ORDINAL (or POD_NAME ending in -<ordinal>) NODE_HOST_TEMPLATE NODE_PORT
# [PORT_STRIDE_SHARD PORT_STRIDE_ORDINAL] CACHE_USER CACHE_PASSWORD CONFIG_DIR (cache.conf, shards)
# DATA_DIR RUN_DIR [BIND NODE_TIMEOUT_MS JOIN_TIMEOUT_S CACHE_SERVER CACHE_CLI]
# The password is read from the environment only; it is written to RUN_DIR/node.conf (mode 600)
# and handed to the CLI through REDISCLI_AUTH, never on a command line and never logged.
set -u

MAX_NODES_PER_SHARD=6
: "${PORT_STRIDE_SHARD:=0}" "${PORT_STRIDE_ORDINAL:=0}" "${BIND:=* -::*}"
: "${JOIN_TIMEOUT_S:=300}" "${CACHE_USER:=mall}"
if [ -z "${ORDINAL:-}" ]; then ORDINAL="${POD_NAME##*-}"; fi
SERVER="${CACHE_SERVER:-$(command -v valkey-server || command -v redis-server)}"
CLI="${CACHE_CLI:-$(command -v valkey-cli || command -v redis-cli)}"
export REDISCLI_AUTH="${CACHE_PASSWORD:?CACHE_PASSWORD is not set}"

log() { echo "cache[$SHARD/$ORDINAL] $*" >&2; }

host_of() { echo "$NODE_HOST_TEMPLATE" | sed "s/{shard}/$1/g; s/{ordinal}/$2/g"; }
port_of() { echo $((NODE_PORT + $1 * PORT_STRIDE_SHARD + $2 * PORT_STRIDE_ORDINAL)); }
# cli SHARD ORDINAL ARGS...: one command to a node, bounded in time.
cli() {
  _h=$(host_of "$1" "$2"); _p=$(port_of "$1" "$2"); shift 2
  timeout 5 "$CLI" --no-auth-warning --user "$CACHE_USER" -h "$_h" -p "$_p" "$@" 2>/dev/null
}
me() { cli "$SHARD" "$ORDINAL" "$@"; }
# ip_of HOST: CLUSTER MEET takes an address, not a name.
ip_of() {
  case "$1" in
    *[!0-9.]*) getent hosts "$1" | awk '{print $1; exit}' ;;
    *) echo "$1" ;;
  esac
}
info_field() { tr -d '\r' | sed -n "s/^$1://p"; }
known_nodes() { cli "$1" "$2" cluster info | info_field cluster_known_nodes; }
state_of() { cli "$1" "$2" cluster info | info_field cluster_state; }
# master_id SHARD ORDINAL: the node id when that node is a primary owning slots.
master_id() {
  cli "$1" "$2" cluster nodes | awk '$3 ~ /myself/ && $3 ~ /master/ && NF > 8 {print $1}'
}
# shard_master SHARD: "ordinal id" of the shard's slot-owning primary, if any answers.
shard_master() {
  _o=0
  while [ "$_o" -lt "$MAX_NODES_PER_SHARD" ]; do
    if [ "$1" != "$SHARD" ] || [ "$_o" != "$ORDINAL" ]; then
      _id=$(master_id "$1" "$_o")
      if [ -n "$_id" ]; then echo "$_o $_id"; return 0; fi
    fi
    _o=$((_o + 1))
  done
  return 1
}
# formed SHARD ORDINAL: the node is in a formed cluster (state ok, two or more primaries with
# slots: during bootstrap a lone primary with slots must not pass for a cluster).
formed() {
  _info=$(cli "$1" "$2" cluster info)
  [ "$(echo "$_info" | info_field cluster_state)" = ok ] && [ "$(echo "$_info" | info_field cluster_size)" -ge 2 ] 2>/dev/null
}
# find_cluster: "shard ordinal" of any other node in a formed cluster.
find_cluster() {
  _s=0
  while [ "$_s" -lt "$SHARDS" ] || [ "$_s" -lt "$SHARD" ]; do
    _o=0
    while [ "$_o" -lt "$MAX_NODES_PER_SHARD" ]; do
      if { [ "$_s" != "$SHARD" ] || [ "$_o" != "$ORDINAL" ]; } && formed "$_s" "$_o"; then
        echo "$_s $_o"; return 0
      fi
      _o=$((_o + 1))
    done
    _s=$((_s + 1))
  done
  return 1
}
meet() {
  _ip=$(ip_of "$(host_of "$1" "$2")")
  [ -n "$_ip" ] && me cluster meet "$_ip" "$(port_of "$1" "$2")" | grep -q OK
}
deadline() { echo $(($(date +%s) + $1)); }
before() { [ "$(date +%s)" -lt "$1" ]; }

render_config() {
  mkdir -p "$RUN_DIR" "$DATA_DIR"
  umask 077
  {
    echo "include $CONFIG_DIR/cache.conf"
    echo "bind $BIND"
    echo "port $(port_of "$SHARD" "$ORDINAL")"
    echo "dir $DATA_DIR"
    echo "cluster-config-file $DATA_DIR/nodes.conf"
    echo "cluster-announce-hostname $(host_of "$SHARD" "$ORDINAL")"
    if [ -n "${NODE_TIMEOUT_MS:-}" ]; then echo "cluster-node-timeout $NODE_TIMEOUT_MS"; fi
    echo "user default off resetkeys resetchannels -@all"
    echo "user $CACHE_USER on >$CACHE_PASSWORD ~* &* +@all"
    echo "masteruser $CACHE_USER"
    echo "masterauth $CACHE_PASSWORD"
  } > "$RUN_DIR/node.conf"
}

# bootstrap: shard 0's first node assigns the slot ranges of the initial primaries and meets them.
bootstrap() {
  log "bootstrapping a cluster of $SHARDS shards"
  _end=$(deadline "$JOIN_TIMEOUT_S"); _s=0
  while [ "$_s" -lt "$SHARDS" ]; do
    until cli "$_s" 0 ping | grep -q PONG; do
      before "$_end" || { log "shard $_s primary never answered"; return 1; }
      sleep 1
    done
    _s=$((_s + 1))
  done
  _s=0
  while [ "$_s" -lt "$SHARDS" ]; do
    _lo=$((_s * 16384 / SHARDS)); _hi=$(((_s + 1) * 16384 / SHARDS - 1))
    cli "$_s" 0 cluster set-config-epoch $((_s + 1)) >/dev/null
    cli "$_s" 0 cluster addslotsrange "$_lo" "$_hi" >/dev/null
    _s=$((_s + 1))
  done
  _s=1
  while [ "$_s" -lt "$SHARDS" ]; do meet "$_s" 0 || return 1; _s=$((_s + 1)); done
  until [ "$(state_of "$SHARD" "$ORDINAL")" = ok ]; do
    before "$_end" || { log "cluster did not reach state ok"; return 1; }
    sleep 1
  done
  log "cluster formed"
}

# new_primary: an empty primary joins a formed cluster, then takes its share of slots (keys move
# with MIGRATE, none is lost). Shards add themselves in order: shard N waits for shard N-1.
new_primary() {
  log "joining the cluster through shard $1 node $2 as a new primary"
  meet "$1" "$2" || return 1
  _end=$(deadline "$JOIN_TIMEOUT_S")
  until [ "$(state_of "$SHARD" "$ORDINAL")" = ok ]; do
    before "$_end" || return 1
    sleep 1
  done
  if [ "$SHARD" -gt 0 ]; then
    until shard_master $((SHARD - 1)) >/dev/null; do before "$_end" || return 1; sleep 2; done
  fi
  _h=$(host_of "$SHARD" "$ORDINAL"); _p=$(port_of "$SHARD" "$ORDINAL")
  timeout 600 "$CLI" --no-auth-warning --user "$CACHE_USER" --cluster fix "$_h:$_p" --cluster-yes >/dev/null 2>&1
  until timeout 600 "$CLI" --no-auth-warning --user "$CACHE_USER" --cluster rebalance "$_h:$_p" \
      --cluster-use-empty-masters >/dev/null 2>&1; do
    before "$_end" || return 1
    sleep 2
  done
  log "slots rebalanced onto this primary"
}

# replica_of ORDINAL ID: meet the shard's primary and replicate it.
replica_of() {
  log "replicating shard $SHARD node $1"
  meet "$SHARD" "$1" || return 1
  _end=$(deadline 60)
  until me cluster replicate "$2" | grep -q OK; do
    before "$_end" || return 1
    sleep 1
  done
}

join() {
  _end=$(deadline "$JOIN_TIMEOUT_S")
  while before "$_end"; do
    if [ "$(known_nodes "$SHARD" "$ORDINAL")" -gt 1 ] 2>/dev/null; then
      log "already a cluster member"; return 0
    fi
    if _m=$(shard_master "$SHARD"); then
      replica_of $_m && return 0
    elif [ "$ORDINAL" = 0 ]; then
      # a primary given slots by the bootstrap waits to be met; only an empty one is a new shard
      if [ -z "$(master_id "$SHARD" "$ORDINAL")" ] && _c=$(find_cluster); then
        new_primary $_c && return 0
      elif [ "$SHARD" = 0 ]; then
        bootstrap && return 0
      fi
    fi
    sleep 2
  done
  log "could not join the cluster in ${JOIN_TIMEOUT_S}s"
  return 1
}

run() {
  SHARDS=$(cat "$CONFIG_DIR/shards")
  render_config
  "$SERVER" "$RUN_DIR/node.conf" &
  pid=$!
  trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
  _end=$(deadline 60)
  until me ping | grep -q PONG; do
    kill -0 "$pid" 2>/dev/null && before "$_end" || { log "server did not start"; exit 1; }
    sleep 0.2
  done
  if ! join; then kill -TERM "$pid"; wait "$pid"; exit 1; fi
  wait "$pid"; _rc=$?
  # a trapped TERM interrupts wait: wait again for the server's own exit
  if kill -0 "$pid" 2>/dev/null; then wait "$pid"; _rc=$?; fi
  exit "$_rc"
}

probe() {
  _info=$(me cluster info) || exit 1
  [ "$(echo "$_info" | info_field cluster_state)" = ok ] || exit 1
  _repl=$(me info replication | tr -d '\r')
  case "$_repl" in
    *role:slave*) echo "$_repl" | grep -q '^master_link_status:up' || exit 1 ;;
  esac
  exit 0
}

prestop() {
  _repl=$(me info replication | tr -d '\r')
  case "$_repl" in *role:master*) ;; *) exit 0 ;; esac
  _line=$(echo "$_repl" | sed -n 's/^slave0:\(.*\)$/\1/p')
  [ -n "$_line" ] || exit 0
  _ip=$(echo "$_line" | tr ',' '\n' | sed -n 's/^ip=//p'); _port=$(echo "$_line" | tr ',' '\n' | sed -n 's/^port=//p')
  log "handing slots to replica $_ip:$_port"
  timeout 5 "$CLI" --no-auth-warning --user "$CACHE_USER" -h "$_ip" -p "$_port" cluster failover >/dev/null 2>&1
  _end=$(deadline 20)
  while before "$_end"; do
    me info replication | tr -d '\r' | grep -q '^role:slave' && exit 0
    sleep 0.5
  done
  exit 0
}

case "${1:-run}" in
  run) run ;;
  probe) probe ;;
  prestop) prestop ;;
  *) echo "usage: $0 run|probe|prestop" >&2; exit 2 ;;
esac
