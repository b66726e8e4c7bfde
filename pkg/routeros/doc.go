// Package routeros builds validated RouterOS CLI commands for the RDS and parses what the RDS prints
// back, tolerating every output quirk documented in docs/routeros.md.
package routeros
