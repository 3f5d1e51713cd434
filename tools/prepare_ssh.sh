#!/usr/bin/env bash
# Prepare this machine for `ray up ray_cluster.yaml`: Ray's local provider reaches every node, the head included,
# over SSH, so the user that runs `ray up` needs passwordless SSH to 127.0.0.1 (and to each worker_ips entry).
#
#   bash tools/prepare_ssh.sh            # idempotent; prints what it did
#
# It creates the key ~/.ssh/distress_ray (the one ray_cluster.yaml names), authorises it for this user, starts an
# sshd listening on 127.0.0.1 only when none answers (that part needs root and Debian's openssh-server), checks
# that `ssh 127.0.0.1` works without a password and that rsync is installed, and makes sure the Ray
# authentication token (~/.ray/auth_token, shared with every node by ray_cluster.yaml) exists. On this machine
# ~/distress (where ray_cluster.yaml runs the project) becomes a link to this checkout unless it exists.
# For worker machines: append ~/.ssh/distress_ray.pub to their ~/.ssh/authorized_keys yourself.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
key=${DISTRESS_RAY_SSH_KEY:-$HOME/.ssh/distress_ray}
ssh_options=(-i "$key" -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o ConnectTimeout=5)

fail() { echo "prepare_ssh: $*" >&2; exit 1; }

command -v ssh >/dev/null || fail "ssh is missing: apt-get install openssh-client"
command -v rsync >/dev/null || fail "rsync is missing (ray up copies files with it): apt-get install rsync"

mkdir -p "$HOME/.ssh"
chmod 700 "$HOME/.ssh"
if [ ! -f "$key" ]; then
  ssh-keygen -q -t ed25519 -N "" -C "distress-ray@$(hostname)" -f "$key"
  echo "created SSH key $key"
fi
touch "$HOME/.ssh/authorized_keys"
chmod 600 "$HOME/.ssh/authorized_keys"
if ! grep -qF "$(cut -d' ' -f2 "$key.pub")" "$HOME/.ssh/authorized_keys"; then
  cat "$key.pub" >> "$HOME/.ssh/authorized_keys"
  echo "authorised $key.pub for $(id -un)"
fi

if ! ssh "${ssh_options[@]}" 127.0.0.1 true 2>/dev/null; then
  sshd=$(command -v sshd || echo /usr/sbin/sshd)
  [ -x "$sshd" ] || fail "no SSH server answers on 127.0.0.1 and sshd is not installed: apt-get install openssh-server"
  [ "$(id -u)" -eq 0 ] || fail "no SSH server answers on 127.0.0.1; start one as root (sudo bash $0) or ask your admin"
  mkdir -p /run/sshd
  ssh-keygen -A >/dev/null
  "$sshd" -o ListenAddress=127.0.0.1 -o PasswordAuthentication=no -o PermitRootLogin=prohibit-password
  echo "started sshd on 127.0.0.1:22"
  for _ in $(seq 20); do
    ssh "${ssh_options[@]}" 127.0.0.1 true 2>/dev/null && break
    sleep 0.5
  done
fi
ssh "${ssh_options[@]}" 127.0.0.1 true || fail "ssh to 127.0.0.1 with $key still fails; see the message above"
echo "passwordless SSH to 127.0.0.1 works"

# ray_cluster.yaml runs the project from ~/distress on every node; here that is this checkout itself.
# A link left by another checkout is re-pointed: `ray up` would otherwise sync this checkout over that one.
if [ ! -e "$HOME/distress" ] || [ -L "$HOME/distress" ]; then
  ln -sfn "$repo" "$HOME/distress"
  echo "linked ~/distress to $repo"
elif [ "$(cd "$HOME/distress" && pwd -P)" != "$(cd "$repo" && pwd -P)" ]; then
  echo "note: ~/distress is not this checkout; ray up will sync this checkout into it and run make setup there"
fi

ray="$repo/.venv/bin/ray"
[ -x "$ray" ] || fail "$ray not found: run 'make setup' first"
"$ray" get-auth-token --generate >/dev/null
echo "Ray authentication token: $HOME/.ray/auth_token"
