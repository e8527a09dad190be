# Each attempt prints one line: "ATTEMPT <what>: LEAKED <evidence>" or "ATTEMPT <what>: denied".
# AGENT_PID and AGENT_DATA (workspace variables) stand for what an attacker could guess or search for.
report() { if [ -n "$2" ]; then echo "ATTEMPT $1: LEAKED $2"; else echo "ATTEMPT $1: denied"; fi; }

# The agent's pool token, from its environment (/proc/<pid>/environ), or any process's.
token=$(cat /proc/"$AGENT_PID"/environ 2>/dev/null | tr '\0' '\n' | grep '^OUTPOST_AGENT_TOKEN=' | head -n1 | cut -d= -f2-)
if [ -z "$token" ]; then
  token=$(for f in /proc/[0-9]*/environ; do tr '\0' '\n' < "$f" 2>/dev/null; done | grep '^OUTPOST_AGENT_TOKEN=' | head -n1 | cut -d= -f2-)
fi
report token "$token"

# The agent's data directory: the other jobs in it.
mine=$(pwd)
others=$(ls "$AGENT_DATA/jobs" 2>/dev/null | while read -r d; do case "$mine" in *"$d"*) ;; *) echo "$d";; esac; done | tr '\n' ' ')
report datadir "$others"

# The other run's files and state.
file=$(find "$AGENT_DATA/jobs" -name victim-secret.txt 2>/dev/null -exec cat {} \; | head -n1)
report other-files "$file"
state=$(find "$AGENT_DATA/jobs" -name terraform.tfstate 2>/dev/null -exec grep -ho 'VICTIM-STATE-MARKER-[0-9a-z]*' {} \; | head -n1)
report other-state "$state"

# Host files.
shadow=$(head -c 12 /etc/shadow 2>/dev/null)
report host-files "$shadow"

# Signals to the agent's processes (SIGCONT: harmless, but delivered only with the right to signal).
if kill -CONT "$AGENT_PID" 2>/dev/null; then report signal "SIGCONT delivered to $AGENT_PID"; else report signal ""; fi
echo ATTACK-DONE
