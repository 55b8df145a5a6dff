//go:build darwin || freebsd

package engine

// Darwin and FreeBSD do not commit anonymous mappings up front anyway.
const mapNoReserve = 0
