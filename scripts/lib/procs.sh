# Process and mount helpers shared by the benchmark scripts (sourced, not run).
# The sourcing script defines `warn MESSAGE`.

# Is $1 a live process (not a zombie)?
alive() {
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

# Sends signal $2 to $1 and waits up to $3 s for it to exit; then SIGKILL.
stop_pid() {
    local pid=$1 sig=$2 secs=$3 i
    alive "$pid" || return 0
    kill "-$sig" "$pid" 2>/dev/null || return 0
    for ((i = 0; i < secs * 10; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    warn "pid $pid did not exit within $secs s of SIG$sig; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
}

# Is something mounted exactly at $1?
is_mounted() {
    M=${1// /\\040} awk '$5 == ENVIRON["M"] { f = 1 } END { exit !f }' /proc/self/mountinfo
}
