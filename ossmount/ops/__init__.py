"""The operators' side of a mount (issue 13): who causes which OSS requests (`accounting`), the control
channel and `ossmount stats` (`control`, `stats`), Prometheus metrics (`metrics`), where a detached mount
logs (`logs`), `ossmount diagnose` (`diagnose`) and updatedb's PRUNEFS (`updatedb`)."""
