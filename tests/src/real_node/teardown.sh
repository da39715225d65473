# Tears a real node down once the test process is gone (its stdin, the lifeline, reads EOF)
# or when run with `now` as $8: the kubelet, containerd and kube-proxy stop with the test
# process, but what they made outlives them (container processes and their shims, mounts, the
# bridge, the CNI and API-server NAT rules, kube-proxy's chains, the cgroup tree). Everything
# matched is this node's own: its directory, its cgroup root, its bridge, its CNI network
# name; kube-proxy's chains are the machine's, so this script holds the machine-wide lock $7
# (says `locked` once it has it) from before kube-proxy starts until they are gone.
#   $1 directory  $2 cgroup root name  $3 bridge  $4 CNI network name  $5 containerd socket
#   $6 kube-proxy binary  $7 lock file
dir=$1 cgroup=$2 bridge=$3 network=$4 socket=$5 kube_proxy=$6 lock=$7
shim=containerd-shim-runc-$(echo v2)
exec 8>>"$lock"
flock 8 && echo locked
exec >/dev/null
[ "${8:-}" = now ] || cat >/dev/null

# The shims of this node's containerd (they re-parent to init), then every process left in
# the node's cgroups, twice: a shim may have started one in between.
for round in 1 2; do
  for proc in /proc/[0-9]*; do
    case "$(tr '\0' ' ' 2>/dev/null <"$proc/cmdline")" in
      # Spelt from a variable: this script's own command line holds its text.
      "$shim -namespace "*" -address $socket "*) kill -KILL "${proc#/proc/}" 2>/dev/null ;;
      */"$shim -namespace "*" -address $socket "*) kill -KILL "${proc#/proc/}" 2>/dev/null ;;
      "$kube_proxy --config=$dir/kube-proxy/config.yaml "*) kill -KILL "${proc#/proc/}" 2>/dev/null ;;
    esac
  done
  for procs in /sys/fs/cgroup/*/"$cgroup"; do
    [ -d "$procs" ] || continue
    find "$procs" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null
  done
  sleep 1
done

# Mounts under the node's directory (overlay roots, secret and token tmpfs), deepest first.
awk -v d="$dir" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r |
  while read -r mount; do umount -l "$mount" 2>/dev/null; done
# The pods' network namespaces outlive their processes: containerd pins each one under
# /var/run/netns (cni-…). This node's are those whose veth is on this node's bridge, so they are
# found (by the peer's namespace id) before the bridge goes. Then the bridge, and the rules
# naming this network or bridge.
# `ip` names the peer's namespace (`link-netns NAME`), or gives its id when it has no name here.
ip -o link show master "$bridge" 2>/dev/null | grep -o 'link-netns[id]* [^ ]*' |
  while read -r kind ns; do
    if [ "$kind" = link-netnsid ]; then
      ns=$(ip netns list 2>/dev/null | awk -v id="(id: $ns)" 'substr($0, length($0) - length(id) + 1) == id {print $1}')
    fi
    [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null
  done
ip link del "$bridge" 2>/dev/null
rules=$(iptables-save -t nat 2>/dev/null | grep '^-A ' |
  grep -e "name: \\\\\"$network\\\\\"" -e " -i $bridge " -e " -o $bridge ")
# The per-container chains those rules jump to are this node's too.
chains=$(printf '%s\n' "$rules" | grep -o -- '-j CNI-[A-Za-z0-9-]*' | cut -c4- | grep -v '^CNI-HOSTPORT-' | sort -u)
printf '%s\n' "$rules" | while read -r rule; do
  [ -n "$rule" ] && eval "iptables -t nat -D ${rule#-A }" 2>/dev/null
done
for chain in $chains; do
  iptables -t nat -F "$chain" 2>/dev/null && iptables -t nat -X "$chain" 2>/dev/null
done
# kube-proxy's chains and the jumps to them, in every mode it has.
"$kube_proxy" --cleanup >/dev/null 2>&1
for hierarchy in /sys/fs/cgroup/*/; do
  [ -d "$hierarchy$cgroup" ] || continue
  find "$hierarchy$cgroup" -depth -type d -exec rmdir {} \; 2>/dev/null
done
exit 0
