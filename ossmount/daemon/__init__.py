"""The shared-mount daemon (`ossmount daemon`) and its client (`ossmount ctl`, `DaemonClient`).

One `ossmount` FUSE process per volume per node, mounted at a global path and bind-mounted onto every target;
an HTTP/1.1 + JSON API on a unix socket (csi-daemon.md §5). Modules:

  api.py         routing and request validation, volume specs (sans-IO)
  decisions.py   state machine, target/reconcile/probe decisions, restart backoff (sans-IO)
  mountinfo.py   /proc/self/mountinfo parsing (sans-IO)
  errors.py      the error type and code → HTTP status table
  state.py       volume records and the run directory
  creds.py       the credentials directory the FUSE process re-reads
  system.py      mount(2)/umount2(2), statvfs probes, process identity, fusectl
  child.py       the FUSE process: command line, spawn, readiness, exit
  manager.py     volumes and the API operations
  recovery.py    supervisor (restart with backoff), prober, reconciliation at start
  metrics.py     Prometheus metrics
  server.py      h11 on trio over the unix socket
  client.py      DaemonClient (blocking; for ctl and the CSI node plugin)
  cli.py, ctl.py the `ossmount daemon` and `ossmount ctl` commands
"""
