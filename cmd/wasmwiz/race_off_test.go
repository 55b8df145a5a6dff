//go:build !race

package main

// raceOverhead scales the memory bounds the tests hold workers to when the
// test binary (whose copies are the workers) has the race detector.
const raceOverhead = 1
