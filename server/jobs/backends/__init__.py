"""The backends: who runs a job of each type (the job-type table names them).

  base.py        what the service hands a backend and gets back; the Backend base class
  local.py       [dev] jobs on the local engines (LocalBackend)
  loras.py       a [dev] job's LoRAs: checked against the folder, reported in its metrics
  fallback.py    [pro]/[max] run on the local [dev] engines (--fallback local)
  forwarding.py  [pro]/[max] forwarded upstream (its Forwarders: server/upstream/)
  refusing.py    [pro]/[max] with nowhere to run: refused with 503 before the job exists
"""
