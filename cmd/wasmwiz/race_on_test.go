//go:build race

package main

// raceOverhead scales the memory bounds the tests hold workers to when the
// test binary (whose copies are the workers) has the race detector, whose
// shadow memory multiplies what every allocation maps (as internal/worker's
// own raceOverhead).
const raceOverhead = 5
