// Package rds is the driver's only way to talk to a ROSE Data Server: an SSH client with a bounded
// session pool, per-command deadlines, reconnect with backoff and a circuit breaker (Client), and
// the storage operations built on it (Storage).
package rds
