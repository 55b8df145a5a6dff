// Package deploytest holds only tests: they check the files that ship
// WasmWiz (Dockerfile, docker-compose.yml, deploy/k8s, deploy/monitoring,
// README, Makefile) against the code they describe, so that renaming a
// variable, a route, a subcommand or a metric in the code alone fails a test.
package deploytest
