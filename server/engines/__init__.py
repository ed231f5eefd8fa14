"""The engines and their transports (docs/architecture.md, "Engines").

  interface.py  the transport protocol (Engine, events, `follow`) and the jobs path's view
                of the engines (Engines, Ran, start_eta)
  pool.py       the local engines: one queue, a worker per device, readiness per device
  worker.py     the owner of one engine: its thread, its state, its job-time estimate
  child.py      the child-process transport: one process per device, events over a pipe
  group.py      the group transport: K child processes running each edit together, its
                sequence split across them (--context-parallel K)

Ray Serve's transport (replicas streaming the same events) is in server/ray/: Ray is an
optional dependency.
"""
